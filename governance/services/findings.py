"""Store what the hygiene detectors and reconciliation find: open new findings, refresh ones still
seen, resolve the rest (of the kinds the caller looks for, and no others).

The scan runs every 15 minutes over everything; a service that changes an identity (owner set,
credential rotated, grant revoked, offboarded...) also asks `findings_recheck_on_commit` for that
identity, so a fixed problem closes at once rather than at the next scan.
"""

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, EventSpec, Target, audit_events_record_many, state_change

from .. import hygiene
from ..choices import FindingExceptionStatus, FindingStatus
from ..models import Finding, FindingException

logger = logging.getLogger(__name__)
# The identities a running transaction asked to re-check, flushed by one on_commit callback.
_local = threading.local()
RECHECK_BATCH = 5000

BATCH_SIZE = 5000
# Two scans at once would race on the one-open-finding-per-key constraint; the second one waits.
_SCAN_LOCK_KEY = 0x68796769656E65  # "hygiene"
# What a scan compares with the stored row to decide whether a finding still seen has changed.
_REFRESHED = ("severity", "owner_to_act_id")
# And the links, for findings whose key does not name them (access on a target, mapped to an identity).
_LINKS = ("identity_id", "entitlement_id")


def lock_findings() -> None:
    """Take the findings' lock for this transaction: scans, re-checks and accepted risks take turns."""
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
    # An accepted risk stays accepted while seen (no second, open finding for it) and resolves when gone.
    accepted = {
        row["key"]: row for row in in_scope.filter(status=FindingStatus.ACCEPTED).values("pk", "key", "details")
    }

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
        if key not in open_rows and key not in accepted
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
    still_accepted = [row["pk"] for key, row in accepted.items() if key in found]
    for chunk in _chunks(seen_pks + still_accepted):
        Finding.objects.filter(pk__in=chunk).update(last_seen_at=now)
    Finding.objects.bulk_update(
        changed, ["details", *(name.removesuffix("_id") for name in refreshed)], batch_size=1000
    )

    gone = [
        (row["pk"], row["details"].get("subject", key))
        for rows in (open_rows, accepted)
        for key, row in rows.items()
        if key not in found
    ]
    for chunk in _chunks([pk for pk, _ in gone]):
        Finding.objects.filter(pk__in=chunk).update(status=FindingStatus.RESOLVED, resolved_at=now)
    gone_accepted = [row["pk"] for key, row in accepted.items() if key not in found]
    if gone_accepted:  # the problem went away under its exception: the register says so
        FindingException.objects.filter(finding_id__in=gone_accepted, status=FindingExceptionStatus.ACTIVE).update(
            status=FindingExceptionStatus.CLOSED, ended_at=now
        )

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
        "still_accepted": len(still_accepted),
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
    lock_findings()
    expired = finding_exceptions_expire(now=now)
    found = hygiene.findings_detect(now=now)
    summary = findings_store(found=found, in_scope=hygiene.findings_in_scope(Finding.objects.all()), now=now)
    by_kind: dict[str, int] = {}
    for candidate in found.values():
        kind = str(candidate.kind)
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {**summary, "by_kind": by_kind, "exceptions_expired": expired}


def finding_exceptions_expire(*, now: datetime) -> int:
    """End the accepted risks whose date has passed and reopen their findings, in the caller's transaction.

    Set-based and idempotent (the scan calls it under its lock): one UPDATE ... RETURNING of the
    exceptions, one of their findings, one audit batch. The detection that follows in the same scan
    resolves a reopened finding whose problem has gone since.
    """
    ended = list(
        FindingException.objects.filter(status=FindingExceptionStatus.ACTIVE, expires_at__lte=now)
        .select_for_update(skip_locked=True)
        .values_list("pk", "finding_id", "expires_at", "finding__details")
    )
    if not ended:
        return 0
    FindingException.objects.filter(pk__in=[row[0] for row in ended]).update(
        status=FindingExceptionStatus.EXPIRED, ended_at=now
    )
    Finding.objects.filter(pk__in=[row[1] for row in ended], status=FindingStatus.ACCEPTED).update(
        status=FindingStatus.OPEN, last_seen_at=now
    )
    audit_events_record_many(
        actor=Actor.system(),
        events=[
            EventSpec(
                AuditAction.FINDING_EXCEPTION_EXPIRED,
                _target(finding_id, (details or {}).get("subject", f"Finding #{finding_id}")),
                {"exception": pk, "until": until},
            )
            for pk, finding_id, until, details in ended
        ],
    )
    return len(ended)


#
# Re-check after a change
#
@state_change
def findings_recheck(*, identity_ids: Iterable[int], now: datetime | None = None) -> dict[str, Any]:
    """Re-run the detectors for these identities only and reconcile their findings (cheap: one
    indexed query per detector, whatever the inventory's size).

    Takes the scan's lock, so a recheck and a scan never open the same finding twice; the scan holds
    it for its one transaction, a recheck for a few milliseconds.
    """
    ids = sorted({pk for pk in identity_ids if pk is not None})
    if not ids:
        return {"open": 0, "opened": 0, "still_open": 0, "updated": 0, "resolved": 0}
    now = now or clock.database_now()
    lock_findings()
    # A person who left or changed is also the owner to act on others' findings: those move too.
    ids = sorted(
        set(ids)
        | set(
            Finding.objects.filter(owner_to_act_id__in=ids, status=FindingStatus.OPEN, identity_id__isnull=False)
            .values_list("identity_id", flat=True)
            .distinct()
        )
    )
    found = hygiene.findings_detect(now=now, identity_ids=ids)
    return findings_store(found=found, in_scope=hygiene.findings_in_scope(Finding.objects.all(), ids), now=now)


def findings_recheck_on_commit(identity_ids: Iterable[int]) -> None:
    """Re-check these identities' findings once the calling service's transaction commits.

    Called by the services that change what a detector looks at (an identity's owner, status or
    credential facts; a grant's state). After commit, so the check sees the change and never holds
    the service's locks; once per transaction, however many services ask (a campaign revoking
    thousands of grants re-checks their holders in a few batches, not once per grant). A failed
    re-check never fails the change: the next scan does the same work.
    """
    ids = {pk for pk in identity_ids if pk is not None}
    if not ids:
        return
    pending = getattr(_local, "pending", None)
    # Still this transaction's? Django drops the callback when its transaction or savepoint rolls back.
    if pending is not None and any(func is pending[0] for _sids, func, _robust in connection.run_on_commit):
        pending[1].update(ids)
        return
    collected: set[int] = set(ids)

    def recheck() -> None:
        if getattr(_local, "pending", None) is not None and _local.pending[0] is recheck:
            _local.pending = None
        _recheck_quietly(sorted(collected))

    _local.pending = (recheck, collected)
    transaction.on_commit(recheck)


def _recheck_quietly(ids: list[int]) -> None:
    for start in range(0, len(ids), RECHECK_BATCH):
        batch = ids[start : start + RECHECK_BATCH]
        try:
            findings_recheck(identity_ids=batch)
        except Exception:  # the next scan does the same work; the change itself stands
            logger.exception("Re-checking the findings of %d identities failed; the next scan will", len(batch))
