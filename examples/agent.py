#!/usr/bin/env python3
"""An agent asking the access portal for just-in-time access, using only the documented API.

    # with an API token made on the agent's identity page
    PORTAL_TOKEN=gp_... python examples/agent.py --portal https://portal.example \\
        --entitlement orders-read --minutes 15 --task T-1234 --action read --resource db/orders \\
        --why "Nightly reconciliation" --on-behalf-of 7,9

    # or with no stored secret: a workload JWT (e.g. a Kubernetes projected token) exchanged for a token
    python examples/agent.py --portal ... --workload-jwt-file /var/run/secrets/tokens/portal ...

It says who it is (GET /api/v1/me/), asks (POST /api/v1/requests/) with its intent and the delegation
chain it acts under, waits for the outcome (polling, with the Retry-After of a 429 honoured), activates
the access if the policy asks for activation, runs the task (`--run`), and releases the grant when the
task is done (POST /api/v1/grants/{id}/release/); expiry applies if it never gets there.

`--no-wait` stops after asking when people must decide (exit code 3, the request id printed); run again
with `--resume <id>` to pick it up. Standard library only, so it runs wherever Python 3.10+ does.
Exit codes: 0 done, 2 refused (the reason and its code are printed), 3 still waiting, 4 denied or ended.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote

API = "/api/v1"


class Refused(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(body.get("detail", f"HTTP {status}"))
        self.status, self.body = status, body


class Portal:
    def __init__(self, base_url: str, token: str = ""):
        self.base_url, self.token = base_url.rstrip("/"), token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call; a 429 waits for its Retry-After and tries again, any other refusal raises."""
        for _ in range(5):
            request = urllib.request.Request(
                self.base_url + API + path,
                data=None if body is None else json.dumps(body).encode(),
                method=method,
                headers={"Accept": "application/json", "Content-Type": "application/json"}
                | ({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as error:
                answer = json.loads(error.read() or b"{}")
                if error.code == 429:
                    time.sleep(int(error.headers.get("Retry-After", "1")))
                    continue
                raise Refused(error.code, answer) from None
            except urllib.error.URLError as error:
                raise Refused(
                    0, {"detail": f"{self.base_url} is unreachable: {error.reason}", "code": "unreachable"}
                ) from None
        raise Refused(429, {"detail": "Still throttled after five tries.", "code": "throttled"})

    def exchange(self, workload_jwt: str) -> None:
        answer = self.call("POST", "/token/exchange/", {"subject_token": workload_jwt})
        self.token = answer["access_token"]
        say(f"exchanged the workload JWT for a token valid until {answer['expires_at']}")


log = logging.getLogger("agent")


def say(text: str) -> None:
    log.info(text)


def find_entitlement(portal: Portal, wanted: str) -> int:
    """An id as given, or the one entitlement of the catalogue with exactly this name."""
    if wanted.isdigit():
        return int(wanted)
    found = [e for e in portal.call("GET", f"/catalogue/?q={quote(wanted)}")["results"] if e["name"] == wanted]
    if len(found) != 1:
        raise Refused(
            404, {"detail": f"{len(found)} entitlements named {wanted!r} that I may ask for.", "code": "not_found"}
        )
    say(f"{wanted} is entitlement {found[0]['id']} of {found[0]['system_name']} ({found[0]['risk_tier']} risk)")
    return found[0]["id"]


def ask(portal: Portal, me: dict, options) -> dict:
    chain = [int(part) for part in options.on_behalf_of.split(",") if part.strip()] if options.on_behalf_of else []
    body = {
        "beneficiary": options.beneficiary or me["id"],
        "entitlement": find_entitlement(portal, options.entitlement),
        "duration_seconds": options.minutes * 60,
        "intent": options.why,
        "intent_task": options.task,
        "intent_action": options.action,
        "intent_resource": options.resource,
        "delegation_chain": chain,
    }
    if options.callback_url:
        body["callback_url"] = options.callback_url
    request = portal.call("POST", "/requests/", body)
    say(f"request {request['id']} is {request['status']}")
    return request


def wait_for_outcome(portal: Portal, request: dict, options) -> dict:
    """Poll until people (or the policy) decided and, if approved, the grant exists."""
    delay, deadline = 2.0, time.monotonic() + options.wait
    while request["status"] == "pending" or (request["status"] == "approved" and not request["grant"]):
        if request["status"] == "approved" and request.get("activation_deadline"):
            request = portal.call("POST", f"/requests/{request['id']}/activate/", {})
            continue
        if options.no_wait or time.monotonic() > deadline:
            say(f"request {request['id']} waits for people; resume with --resume {request['id']}")
            raise SystemExit(3)
        time.sleep(delay)
        delay = min(delay * 1.5, 30.0)
        request = portal.call("GET", f"/requests/{request['id']}/")
    return request


def wait_for_grant(portal: Portal, grant_id: int, options) -> dict:
    """A grant is real once the system's connector confirmed it (at once, or when its owner does it by hand)."""
    delay, deadline = 2.0, time.monotonic() + options.wait
    grant = portal.call("GET", f"/grants/{grant_id}/")
    while grant["status"] == "pending_provision":
        if options.no_wait or time.monotonic() > deadline:
            say(f"grant {grant_id} waits for its system to put it in place; resume later with --resume")
            raise SystemExit(3)
        time.sleep(delay)
        delay = min(delay * 1.5, 30.0)
        grant = portal.call("GET", f"/grants/{grant_id}/")
    if grant["status"] != "active":
        say(f"grant {grant_id} is {grant['status']}")
        raise SystemExit(4)
    return grant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portal", default=os.environ.get("PORTAL_URL", "http://localhost:8000"))
    parser.add_argument("--token", default=os.environ.get("PORTAL_TOKEN", ""))
    parser.add_argument("--workload-jwt-file", help="exchange this JWT for a short-lived token instead")
    parser.add_argument("--entitlement", help="the entitlement's id, or its exact name (GET /api/v1/catalogue/)")
    parser.add_argument("--beneficiary", type=int, help="default: the agent itself")
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--task", default="", help="the task id the access is for")
    parser.add_argument("--action", default="", help="what the task does (read, write, deploy...)")
    parser.add_argument("--resource", default="", help="on what")
    parser.add_argument("--why", default="", help="the intent in words")
    parser.add_argument("--on-behalf-of", default="", help="delegation ids, from the initiator's to the agent's")
    parser.add_argument("--callback-url", default="", help="be told the outcome there (a signed POST)")
    parser.add_argument("--run", default="", help="the command that does the task while the access is held")
    parser.add_argument("--wait", type=int, default=600, help="seconds to wait for people to decide")
    parser.add_argument("--no-wait", action="store_true", help="stop after asking if people must decide")
    parser.add_argument("--resume", type=int, help="pick up this request instead of asking again")
    options = parser.parse_args(argv)
    # What the agent does, line by line on standard output (where the caller's stdout is now).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("agent: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        return run(options, parser)
    finally:
        log.removeHandler(handler)


def run(options, parser) -> int:
    portal = Portal(options.portal, options.token)
    try:
        if options.workload_jwt_file:
            with open(options.workload_jwt_file, encoding="utf-8") as handle:
                portal.exchange(handle.read().strip())
        me = portal.call("GET", "/me/")["identity"]
        say(f"I am {me['name']} ({me['kind']}, identity {me['id']})")
        if options.resume:
            request = portal.call("GET", f"/requests/{options.resume}/")
        elif options.entitlement:
            request = ask(portal, me, options)
        else:
            parser.error("--entitlement or --resume is needed")
        request = wait_for_outcome(portal, request, options)
        if request["status"] != "approved":
            say(f"request {request['id']} ended {request['status']}: {request.get('decision_note') or ''}")
            return 4
        approval = (request["policy"].get("auto_approve") and "automatically") or "by people"
        say(f"request {request['id']} approved {approval}; grant {request['grant']}")
        grant = wait_for_grant(portal, request["grant"], options)
        say(f"grant {grant['id']} is active until {grant['expires_at']}")
        if options.run:
            subprocess.run(options.run, shell=True, check=False)
        released = portal.call("POST", f"/grants/{request['grant']}/release/", {"reason": "task done"})
        say(f"released grant {released['id']}: {released['status']}")
        return 0
    except Refused as refusal:
        body = refusal.body
        say(f"refused ({refusal.status}, {body.get('code', 'error')}): {body.get('detail')}")
        for reason in body.get("reasons", []):
            say(f"  - {reason}")
        for field, errors in (body.get("errors") or {}).items():
            say(f"  {field}: {' '.join(map(str, errors))}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
