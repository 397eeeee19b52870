"""Create the demo logins, then a demo organisation sized by --identities (idempotent)."""

import argparse
import time

from django.core.management.base import BaseCommand, CommandError

from governance.demo import demo_organisation_build
from governance.demo_certification import demo_campaigns_build
from governance.demo_findings import demo_accepted_risk_build
from governance.services.findings import findings_scan
from jit.demo import demo_requests_build
from jit.demo_break_glass import demo_break_glass_build
from jit.services.expiry import grants_expire_due
from portal.demo import DEMO_PASSWORD, create_demo_users


class Command(BaseCommand):
    help = "Create demo logins and a demo organisation (idempotent: an existing organisation is kept)."

    def add_arguments(self, parser):
        parser.add_argument("--identities", type=int, default=60, help="How many identities to create (default 60).")
        parser.add_argument("--seed", type=int, default=1, help="Random seed, for a reproducible organisation.")
        parser.add_argument(
            "--history",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Write history rows for generated identities and grants (default: up to 10,000 identities).",
        )

    def handle(self, *args, identities: int, seed: int, history: bool | None, **options):
        if identities < 0:
            raise CommandError("--identities must be 0 or more.")
        users = create_demo_users()
        self.stdout.write(self.style.SUCCESS(f"Demo logins (password: {DEMO_PASSWORD}):"))
        for username, roles in users:
            self.stdout.write(f"  {username:<10} {', '.join(roles)}")

        started = time.monotonic()
        built = demo_organisation_build(identities=identities, seed=seed, history=history)
        if built["skipped"]:
            self.stdout.write("The demo organisation exists already: left as it is.")
        else:
            counts = ", ".join(
                f"{v} {k.replace('_', ' ')}" for k, v in built.items() if k not in ("skipped", "history")
            )
            counts += "" if built["history"] else "; no history rows for generated rows"
            self.stdout.write(f"Demo organisation: {counts} ({time.monotonic() - started:.1f}s).")

        started = time.monotonic()
        summary = findings_scan()
        self.stdout.write(
            f"Hygiene scan: {summary['open']} open findings ({summary['opened']} new, {summary['resolved']} resolved)"
            f" in {time.monotonic() - started:.1f}s."
        )
        if not demo_accepted_risk_build()["skipped"]:
            self.stdout.write("Demo exception register: one accepted risk, for 90 days.")
        if not built["skipped"]:
            made = demo_requests_build()
            self.stdout.write(
                f"Demo requests: {made['requests']} submitted, {made['active_grants']} just-in-time grant active."
            )
        # Reviews to look at from the first sign-in (made once: a second run finds them by name).
        campaigns = demo_campaigns_build()
        if not campaigns["skipped"]:
            self.stdout.write(
                f"Demo campaigns: one running ({campaigns['running_items']} items, {campaigns['running_decided']} "
                f"decided), one closed ({campaigns['closed_items']} items)."
            )
        # Break-glass: eligibility, a reviewed activation, a live one waiting for review, a drill (made once).
        glass = demo_break_glass_build(password=DEMO_PASSWORD)
        if not glass["skipped"]:
            self.stdout.write(
                f"Demo break-glass: {glass['eligibilities']} eligibilities, {glass['reviewed']} reviewed and "
                f"{glass['unreviewed']} unreviewed activation(s), {glass['drills']} drill scheduled."
            )
        # One sweep now, so the health check has a heartbeat from the start.
        expired = grants_expire_due()
        self.stdout.write(f"Expiry sweep: {expired} grant(s) past expiry sent for removal.")
