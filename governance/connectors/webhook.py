"""The webhook connector: the portal POSTs a signed JSON event to the target, which does the work.

Each call is one POST of `{"event": "grant.provision" | "grant.revoke" | "holding.revoke", "grant",
"account", "target_name", "identity", "entitlement", "system"}`, signed as audit.webhooks signs
(HMAC-SHA256 over "<timestamp>.<body>" with the system's signing secret) and carrying an
Idempotency-Key per job: the same job delivered again (a retry after a timeout, a worker that died
after the call) carries the same key, so the target does the work once.

The key is derived from the grant, since a connector is handed the grant, not the outbox message:
`grant:<id>:connector.<provision|revoke>:<number of the grant's history rows>`. Every ask of the
connector follows a change of the grant (issued, revoke requested, failed then retried), which adds a
history row, and nothing changes the grant while its ask is outstanding; so the count is the same on
every retry of one job and new for the next job. For a single ask it equals the outbox's own key: both
are `governance.connectors.connector_key`.

A 2xx confirms (or, for a target that finishes later, `asynchronous`, only says the job was accepted:
the target confirms with a signed callback, governance.api.connector_callbacks). 401/403/404/400/422,
a redirect to elsewhere, a certificate that does not verify and bad settings fail at once
(PermanentError); timeouts, a refused connection, 5xx and 429 are tried again with backoff
(RetriableError).
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings as django_settings
from django.core.cache import cache

from audit.services import Actor
from audit.webhooks import (
    WebhookAnswer,
    WebhookFailed,
    origin_of,
    signatures_match,
    webhook_body,
    webhook_send,
    webhook_signature,
    webhook_verify,
)

from ..errors import DomainError, InvalidTransition, ValidationFailed
from . import (
    BaseConnector,
    Check,
    ConnectorSettingsForm,
    Holding,
    Outcome,
    PermanentError,
    Result,
    RetriableError,
    connector_key,
)

CALLBACK_PATH = "/api/v1/connectors/webhook/callback/"
CALLBACK_EVENTS = ("grant.provisioned", "grant.revoked", "grant.failed")
CALLBACK_TOLERANCE_SECONDS = 300
MAX_CALLBACK_BYTES = 16 * 1024
MAX_HOLDINGS_BYTES = 64 * 1024 * 1024  # a holdings list of a few hundred thousand accounts


def webhook_url_problem(url: str) -> str:
    """Why this URL may not be a webhook target ("" when it may): https only unless allowed, allowlisted hosts."""
    parts = urlsplit(url)
    schemes = ("https", "http") if django_settings.CONNECTOR_WEBHOOK_ALLOW_HTTP else ("https",)
    allowed = django_settings.CONNECTOR_WEBHOOK_HOSTS
    if parts.scheme not in schemes or not parts.hostname:
        return f"Must be an absolute {' or '.join(schemes)} URL."
    if parts.username or parts.password:
        return "May not carry credentials: put the signing secret in its own setting."
    if allowed and parts.hostname.lower() not in allowed:
        return "This host is not on the portal's webhook allowlist (CONNECTOR_WEBHOOK_HOSTS)."
    return ""


class WebhookSettingsForm(ConnectorSettingsForm):
    url = forms.CharField(label="Target URL", max_length=500, help_text="Where provision and revoke events are POSTed.")
    signing_secret = forms.CharField(
        label="Signing secret",
        min_length=16,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Shared with the target; every call is signed with HMAC-SHA256 over the timestamp and body.",
    )
    holdings_url = forms.CharField(
        label="Holdings URL",
        max_length=500,
        required=False,
        help_text="Optional: a GET here answers what the target grants now, for reconciliation.",
    )
    asynchronous = forms.BooleanField(
        label="Target confirms later",
        required=False,
        help_text="A 2xx means accepted, not done: the target confirms with a signed callback.",
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        problem = webhook_url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_holdings_url(self) -> str:
        url = (self.cleaned_data.get("holdings_url") or "").strip()
        problem = url and webhook_url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def grant_idempotency_key(grant, action: str) -> str:
    """One key per job of a grant (see the module docstring): stable over the job's retries, new for the next."""
    attempt = getattr(grant, "history_count", None)  # counted for a whole batch by the revoke handler
    if attempt is None:
        attempt = grant.history.count()
    return connector_key(grant.pk, f"connector.{action}", attempt)


class WebhookConnector(BaseConnector):
    name = "webhook"
    settings_form = WebhookSettingsForm
    secret_fields = ("signing_secret",)
    concurrent_calls = True  # a signed POST each, no database: a batch's calls go out side by side

    #
    # Calls
    #
    def provision(self, grant) -> Result:
        return self._grant_event(grant, "grant.provision", "provision")

    def revoke(self, grant) -> Result:
        return self._grant_event(grant, "grant.revoke", "revoke")

    def remove_holding(self, holding: Holding) -> Result:
        """Ask the target to remove access that no grant governs (reconciliation's "revoke at the target").

        The key is the holding and the day (UTC): retries of one removal are one job at the target, and
        the same access found again another day (given again outside the portal) is a new one.
        """
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        digest = sha256(f"{holding.account}\0{holding.target_name}".encode()).hexdigest()[:32]
        payload = self._payload("holding.revoke", account=holding.account, target_name=holding.target_name, grant=None)
        key = f"holding:{self.system.pk if self.system else 0}:{digest}:{day}"
        answer = self._send(self._url(), event="holding.revoke", body=webhook_body(payload), key=key)
        return self._result(answer, "holding.revoke", key)

    def holdings(self) -> set[Holding] | None:
        url = (self.settings.get("holdings_url") or "").strip()
        if not url:
            return None
        self._check_url(url, "holdings URL")
        answer = self._send(url, event="holdings.list", method="GET", max_answer_bytes=MAX_HOLDINGS_BYTES)
        return self._parse_holdings(answer, origin_of(url))

    def test_connection(self) -> list[Check]:
        checks = []
        try:
            url = self._url()
            self._secret()
        except PermanentError as exc:
            return [Check("Settings", False, str(exc))]
        checks.append(Check("Settings", True, f"Events go to {origin_of(url)}, signed with the system's secret."))
        body = webhook_body({"event": "connection.test", "system": self._system_data()})
        try:
            answer = self._send(url, event="connection.test", body=body, key=f"connection-test:{uuid.uuid4().hex}")
            checks.append(
                Check("Target URL", True, f"{origin_of(url)} answered {answer.status} to a signed test event.")
            )
        except (PermanentError, RetriableError) as exc:
            checks.append(Check("Target URL", False, str(exc)))
        holdings_url = (self.settings.get("holdings_url") or "").strip()
        if holdings_url:
            try:
                found = self.holdings() or set()
                checks.append(Check("Holdings URL", True, f"{origin_of(holdings_url)} listed {len(found)} holdings."))
            except (PermanentError, RetriableError) as exc:
                checks.append(Check("Holdings URL", False, str(exc)))
        if self.settings.get("asynchronous"):
            callback = django_settings.PORTAL_BASE_URL.rstrip("/") + CALLBACK_PATH
            checks.append(Check("Callback", True, f"The target confirms each job by a signed POST to {callback}."))
        return checks

    #
    # The event
    #
    def _grant_event(self, grant, event: str, action: str) -> Result:
        payload = self._payload(
            event,
            account=self.account_for(grant.identity),
            target_name=self.target_name_for(grant.entitlement),
            grant=grant,
        )
        key = grant_idempotency_key(grant, action)
        answer = self._send(self._url(), event=event, body=webhook_body(payload), key=key)
        return self._result(answer, event, key)

    def _payload(self, event: str, *, account: str, target_name: str, grant) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "event": event,
            "grant": None,
            "account": account,
            "target_name": target_name,
            "identity": None,
            "entitlement": None,
            "system": self._system_data(),
        }
        if grant is not None:
            duration = grant.approved_duration
            payload["grant"] = {
                "id": grant.pk,
                "status": grant.status,
                "kind": grant.kind,
                "expires_at": _iso(grant.expires_at),
                "approved_duration_seconds": int(duration.total_seconds()) if duration else None,
            }
            payload["identity"] = {"id": grant.identity.pk, "name": grant.identity.name, "kind": grant.identity.kind}
            payload["entitlement"] = {"id": grant.entitlement.pk, "name": grant.entitlement.name}
        return payload

    def _system_data(self) -> dict[str, Any] | None:
        return {"id": self.system.pk, "name": self.system.name} if self.system is not None else None

    def _result(self, answer: WebhookAnswer, event: str, key: str) -> Result:
        reference = ""
        try:
            parsed = json.loads(answer.body) if answer.body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("reference"), str | int):
            reference = str(parsed["reference"])[:200]
        where = origin_of(self._url())
        if self.settings.get("asynchronous"):
            return Result(
                Outcome.PENDING,
                reference=reference,
                detail=f"{where} answered {answer.status} to {event} (Idempotency-Key {key}): accepted,"
                " to be confirmed by its signed callback",
            )
        return Result(
            Outcome.CONFIRMED,
            reference=reference,
            detail=f"{where} answered {answer.status} to {event} (Idempotency-Key {key})",
        )

    def _parse_holdings(self, answer: WebhookAnswer, where: str) -> set[Holding]:
        try:
            listed = json.loads(answer.body)["holdings"]
            found = {Holding(str(item["account"]), str(item["target_name"])) for item in listed}
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(
                f'{where} did not answer {{"holdings": [{{"account": ..., "target_name": ...}}]}}'
                f" ({type(exc).__name__})"
            ) from None
        return found

    #
    # Settings and sending
    #
    def _url(self) -> str:
        url = (self.settings.get("url") or "").strip()
        if not url:
            raise PermanentError("No target URL is configured.")
        self._check_url(url, "target URL")
        return url

    @staticmethod
    def _check_url(url: str, what: str) -> None:
        # Settings are checked when saved; checked again here because the portal's rules (https, the
        # allowlist) may have tightened since.
        problem = webhook_url_problem(url)
        if problem:
            raise PermanentError(f"The {what} {origin_of(url)} is refused: {problem}")

    def _secret(self) -> str:
        secret = self.settings.get("signing_secret") or ""
        if not secret:
            raise PermanentError("No signing secret is configured.")
        return secret

    def _send(
        self,
        url: str,
        *,
        event: str,
        body: bytes = b"",
        method: str = "POST",
        key: str = "",
        max_answer_bytes: int | None = None,
    ) -> WebhookAnswer:
        extra = {"max_answer_bytes": max_answer_bytes} if max_answer_bytes else {}
        try:
            return webhook_send(
                url,
                secret=self._secret(),
                event=event,
                body=body,
                method=method,
                idempotency_key=key,
                timeout=django_settings.CONNECTOR_TIMEOUT_SECONDS,
                **extra,
            )
        except WebhookFailed as exc:
            raise (RetriableError if exc.retriable else PermanentError)(str(exc)) from None


#
# The signed callback of a target that finishes later
#
class SignatureRefused(DomainError):
    """The callback is not signed by the grant's system: nothing is done, and nothing says why in detail."""

    status_code = 401
    default_code = "signature_invalid"


@dataclass(frozen=True)
class CallbackOutcome:
    grant: Any
    changed: bool
    replayed: bool = False


_NOT_SIGNED = "The signature does not match: sign with the system's signing secret over <timestamp>.<body>."


def _callback_grant(body: bytes):
    """The grant a callback names (it tells whose secret signs), read before the signature is checked."""
    from ..models import Grant

    if len(body) > MAX_CALLBACK_BYTES:
        raise ValidationFailed(f"A callback is at most {MAX_CALLBACK_BYTES} bytes.", code="too_large")
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationFailed("The body is not JSON.", code="invalid") from None
    grant_id = data.get("grant") if isinstance(data, dict) else None
    if not isinstance(grant_id, int) or isinstance(grant_id, bool):
        message = 'Send {"grant": <id>, "event": "grant.provisioned" | "grant.revoked" | "grant.failed"}.'
        raise ValidationFailed(message, field_errors={"grant": ["An integer grant id."]})
    if not 0 < grant_id < 2**63:
        return data, None  # no such grant: refused as unsigned, like any unknown id
    grant = Grant.objects.select_related("entitlement__system", "identity").filter(pk=grant_id).first()
    return data, grant


def webhook_callback_accept(*, body: bytes, timestamp: str, signature: str) -> CallbackOutcome:
    """Apply a target's signed word on a job it accepted earlier (an `asynchronous` webhook system).

    The signature (the grant's system's signing secret over "<timestamp>.<body>", as the portal signs
    its own calls) is the authentication: anything else about an unsigned, wrongly signed or unknown
    grant's callback is one refusal, 401, with nothing written. A timestamp more than five minutes
    from the portal's clock is refused; a signature seen before (kept in the cache for twice the
    tolerance) is a replay and changes nothing, and a repeat of what the grant already shows changes
    nothing either (the services accept a confirmation once).
    """
    from ..choices import GrantStatus
    from ..services.grants import (
        grant_confirm_provisioned,
        grant_confirm_revoked,
        grant_provision_failed,
        grant_revoke_failed,
    )
    from .secrets import settings_with_secrets

    if not timestamp or not signature:
        raise SignatureRefused(
            "Sign the callback: X-Portal-Timestamp and X-Portal-Signature headers.", code="signature_missing"
        )
    data, grant = _callback_grant(body)
    system = grant.entitlement.system if grant is not None else None
    secret = settings_with_secrets(system).get("signing_secret") if system and system.connector == "webhook" else ""
    try:
        moment = int(timestamp)
    except ValueError:
        raise SignatureRefused(_NOT_SIGNED) from None
    if not secret or not signatures_match(webhook_signature(secret, moment, body), signature):
        raise SignatureRefused(_NOT_SIGNED)
    if not webhook_verify(secret, timestamp, body, signature, tolerance=CALLBACK_TOLERANCE_SECONDS):
        raise SignatureRefused(
            "The timestamp is more than 5 minutes from the portal's clock: sign again with the time now.",
            code="timestamp_out_of_range",
        )
    event, error = data.get("event"), data.get("error") or ""
    if event not in CALLBACK_EVENTS or not isinstance(error, str):
        raise ValidationFailed(
            f"Unknown event {str(event)[:50]!r}: one of {', '.join(CALLBACK_EVENTS)}.",
            field_errors={"event": [f"One of {', '.join(CALLBACK_EVENTS)}."]},
        )
    seen = "connector-callback:" + sha256(f"{timestamp}.{signature}".encode()).hexdigest()
    if not cache.add(seen, True, timeout=2 * CALLBACK_TOLERANCE_SECONDS + 60):
        grant.refresh_from_db()
        return CallbackOutcome(grant, changed=False, replayed=True)
    said = f"{system.name} by signed callback (timestamp {timestamp})"
    before = grant.status
    try:
        if event == "grant.provisioned":
            grant = grant_confirm_provisioned(
                grant_id=grant.pk, actor=Actor.system(), confirmation=f"confirmed by {said}"
            )
        elif event == "grant.revoked":
            grant = grant_confirm_revoked(grant_id=grant.pk, actor=Actor.system(), confirmation=f"confirmed by {said}")
        elif before == GrantStatus.PENDING_PROVISION:
            grant = grant_provision_failed(
                grant_id=grant.pk, actor=Actor.system(), error=f"{said}: {error[:1500] or 'no reason given'}"
            )
        elif before == GrantStatus.REVOKING:
            grant = grant_revoke_failed(
                grant_id=grant.pk, actor=Actor.system(), error=f"{said}: {error[:1500] or 'no reason given'}"
            )
        elif before not in (GrantStatus.PROVISION_FAILED, GrantStatus.REVOKE_FAILED):
            raise InvalidTransition(
                f"Grant #{grant.pk} is {grant.get_status_display().lower()}: no job of it waits on {system.name}."
            )
    except Exception:
        cache.delete(seen)  # not done: the target may send the same signed callback again
        raise
    return CallbackOutcome(grant, changed=grant.status != before)
