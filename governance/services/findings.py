"""Store what the hygiene detectors and reconciliation find: open new findings, refresh ones still
seen, resolve the rest (of the kinds the caller looks for, and no others)."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, EventSpec, Target, audit_events_record_many, state_change

from .. import hygiene
from ..choices import FindingStatus
from ..models import Finding

BATCH_SIZE = 5000
# Two scans at once would race on the one-open-finding-per-key constraint; the second one waits.
_SCAN_LOCK_KEY = 0x68796769656E65  # "hygiene"
# What a scan compares with the stored row to decide whether a finding still seen has changed.
_REFRESHED = ("severity", "owner_to_act_id")
# And the links, for findings whose key does not name them (access on a target, mapped to an identity).
_LINKS = ("identity_id", "entitlement_id")


def _lock_scan() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SCAN_LOCK_KEY])
    # SQLite: transactions are IMMEDIATE (settings), so one writer at a time already.


def _chunks(items: list, size: int = BATCH_SIZE):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _target(pk: int, label: str) -> Target:
    return Target("governance.finding", str(pk), label[:200])


def findings_store(
    *,
    found: dict[str, hygiene.Candidate],
    in_scope: QuerySet[Finding],
    now: datetime,
    kept_details: Iterable[str] = (),
    refresh_links: bool = False,
) -> dict[str, Any]:
    """Reconcile the open findings `in_scope` with `found` (by key), in the caller's transaction.

    A new key opens a finding, a key seen again refreshes `last_seen_at` (and the owner to act,
    severity and details when they changed; the identity and entitlement too with `refresh_links`),
    an open key in scope no longer seen is
    resolved. Only findings `in_scope` are ever resolved: the hygiene scan and each system's
    reconciliation own disjoint sets, so neither resolves the other's. `kept_details` are keys of a
    finding's details that record work in hand (a removal asked) and survive a refresh.
    Opened and resolved findings are audited as one batch.
    """
    refreshed = _REFRESHED + _LINKS if refresh_links else _REFRESHED
    open_rows = {
        row["key"]: row for row in in_scope.filter(status=FindingStatus.OPEN).values("pk", "key", "details", *refreshed)
    }
    kept_details = tuple(kept_details)

    new = [
        Finding(
            key=c.key,
            kind=c.kind,
            severity=c.severity,
            status=FindingStatus.OPEN,
            identity_id=c.identity_id,
            entitlement_id=c.entitlement_id,
            grant_id=c.grant_id,
            owner_to_act_id=c.owner_to_act_id,
            details=c.details,
            first_seen_at=now,
            last_seen_at=now,
        )
        for key, c in found.items()
        if key not in open_rows
    ]
    Finding.objects.bulk_create(new, batch_size=BATCH_SIZE)

    seen_pks, changed = [], []
    for key, row in open_rows.items():
        candidate = found.get(key)
        if candidate is None:
            continue
        seen_pks.append(row["pk"])
        details = candidate.details
        if kept_details:
            details = {**details, **{k: row["details"][k] for k in kept_details if k in row["details"]}}
        if details != row["details"] or any(getattr(candidate, name) != row[name] for name in refreshed):
            changed.append(
                Finding(pk=row["pk"], details=details, **{name: getattr(candidate, name) for name in refreshed})
            )
    for chunk in _chunks(seen_pks):
        Finding.objects.filter(pk__in=chunk).update(last_seen_at=now)
    Finding.objects.bulk_update(
        changed, ["details", *(name.removesuffix("_id") for name in refreshed)], batch_size=1000
    )

    gone = [(row["pk"], row["details"].get("subject", key)) for key, row in open_rows.items() if key not in found]
    for chunk in _chunks([pk for pk, _ in gone]):
        Finding.objects.filter(pk__in=chunk).update(status=FindingStatus.RESOLVED, resolved_at=now)

    events = [
        EventSpec(
            AuditAction.FINDING_OPENED,
            _target(f.pk, f"{f.get_kind_display()}: {f.details['subject']}"),
            {"kind": f.kind, "severity": f.severity, "owner_to_act": f.owner_to_act_id, "key": f.key},
        )
        for f in new
    ] + [EventSpec(AuditAction.FINDING_RESOLVED, _target(pk, subject), {"resolved_at": now}) for pk, subject in gone]
    audit_events_record_many(actor=Actor.system(), events=events)
    return {
        "open": len(found),
        "opened": len(new),
        "still_open": len(seen_pks),
        "updated": len(changed),
        "resolved": len(gone),
    }


@state_change
def findings_scan(*, now: datetime | None = None) -> dict[str, Any]:
    """Compute every current hygiene finding and reconcile the stored ones with it, in one transaction.

    A finding is identified by its key (kind and subject). Only the kinds the detectors produce are
    in scope: findings of other kinds (drift found by reconciling a system with its target) belong
    to their own service and are never resolved here. Running it twice changes nothing but
    `last_seen_at`.
    """
    now = now or clock.database_now()
    _lock_scan()
    found = hygiene.findings_detect(now=now)
    summary = findings_store(found=found, in_scope=Finding.objects.filter(kind__in=list(hygiene.DETECTORS)), now=now)
    by_kind: dict[str, int] = {}
    for candidate in found.values():
        kind = str(candidate.kind)
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {**summary, "by_kind": by_kind}
