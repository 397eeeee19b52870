"""The demo's exception register: one accepted risk, so the register has something to show from the start."""

from datetime import timedelta

from django.contrib.auth import get_user_model

from audit.kernel import clock

from .choices import FindingKind, FindingStatus
from .models import Finding, FindingException
from .services.finding_fixes import finding_accept_risk

# Kinds whose risk a team plausibly accepts for a while (not an SoD conflict or an orphan), and why.
REASONS = {
    FindingKind.SECRET_OUTSIDE_MANAGER: "Moves to the secrets manager with the Q1 platform migration; "
    "the key is scoped read-only meanwhile.",
    FindingKind.ROTATION_OVERDUE: "Rotated with the vendor's next release; the key only reaches the staging API.",
    FindingKind.STALE: "Runs the year-end close only; kept for it, reviewed after.",
}


def demo_accepted_risk_build() -> dict[str, int | bool]:
    """Accept, as the demo admin, the risk of one open finding for 90 days (once: a register with rows is kept)."""
    admin = get_user_model().objects.filter(username="admin").first()
    if admin is None or FindingException.objects.exists():
        return {"skipped": True}
    open_findings = Finding.objects.filter(status=FindingStatus.OPEN, identity__isnull=False).order_by("pk")
    for kind, reason in REASONS.items():
        finding = open_findings.filter(kind=kind).first()
        if finding is not None:
            finding_accept_risk(
                finding_id=finding.pk, actor=admin, reason=reason, until=clock.database_now() + timedelta(days=90)
            )
            return {"skipped": False, "accepted": 1}
    return {"skipped": True}
