"""Reconciliation: what a target actually grants, compared with the grants in force, and the fixes.

`system_reconcile` asks the system's connector for its holdings with no transaction open and no
row locked (a target may be slow), then compares in one short transaction and stores the drift as
findings of this system, keyed by what they are about so a rerun refreshes them:
- UNGOVERNED_ACCESS: the target grants `account` the `target_name` and no grant governs it
  (standing access that nobody governs): revoke it at the target, or adopt it and send it to review;
- MISSING_AT_TARGET: a grant in force the target does not hold: provision it again.

Work in flight is not drift: a grant waiting for its provisioning or its removal (pending, revoking,
failed removal), or one activated or ended while the holdings were being read, explains whatever the
target shows for it, either way. A grant whose identity has no account name on the target is left
out (the connector could not have put it there). The hygiene scan never resolves these findings
(`findings_scan` keeps to its detectors' kinds); each reconciliation resolves only its own system's.

Fixes are services for the system's owner or an admin, each audited: revoking at the target goes
through the outbox (`REMOVE_HOLDING`) and the finding resolves once the target confirms; adopting
creates an active standing grant (the access exists: no provisioning) and puts it in front of the
entitlement's owner in a micro-review, as a risk-tier change does; re-provisioning moves the grant
back to pending and asks the connector again.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.urls import NoReverseMatch, reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.models import OutboxMessage, OutboxStatus
from audit.outbox import outbox_enqueue, outbox_handler
from audit.services import Actor, ActorLike, Target, acting_user, audit_event_record, state_change

from .. import policies
from ..choices import FindingKind, FindingStatus, GrantKind, GrantStatus, IdentityStatus, LifecycleStatus, Severity
from ..connectors import (
    CONNECTORS,
    BaseConnector,
    ConnectorError,
    Holding,
    Outcome,
    Result,
    RetriableError,
    connector_class,
    connector_for,
)
from ..errors import InvalidTransition, ValidationFailed
from ..hygiene import Candidate
from ..locks import hold_entitlement, lock
from ..models import Entitlement, Finding, Grant, Identity, System
from ..models.certification import ReviewerSource
from ..roles import Role
from .certification_schedules import _micro_review
from .common import check
from .findings import findings_store
from .grants import EXTEND, PROVISION, _ask_connector
from .notifications import notify, users_of

logger = logging.getLogger(__name__)

RECONCILE, REMOVE_HOLDING = "system.reconcile", "connector.remove_holding"
DRIFT_KINDS = (FindingKind.UNGOVERNED_ACCESS, FindingKind.MISSING_AT_TARGET)
KEY_MAX_LENGTH = 200  # Finding.key
# Details a reconciliation keeps on refresh: the removal someone asked for, and how it went.
REMOVAL_DETAILS = ("removal_asks", "removal_asked_at", "removal_error")
# How an identity's account name is found, per `account_attribute` (connectors.ACCOUNT_ATTRIBUTES).
ACCOUNT_LOOKUPS = {"external_id": "external_id", "login": "user__username", "email": "email", "name": "name"}
_LOOKUP_BATCH = 10_000


#
# Who may act, and which connectors can tell
#
def can_fix_drift(user, system: System | None) -> bool:
    """The system's owner (an active person) or an admin; never a read-only auditor, never a delegate."""
    if policies.is_read_only(user):
        return False
    if policies.is_admin(user):
        return True
    me = policies.identity_of(user)
    return me is not None and system is not None and me.pk == system.owner_id and me.status == IdentityStatus.ACTIVE


def _require_fixer(actor: ActorLike, system: System) -> None:
    check(actor, can_fix_drift, system, f"Only the owner of {system.name} or an admin may act on its drift.")


def can_tell(connector_name: str) -> bool:
    """The connector lists what its target grants (it overrides `holdings`): cheap, no target call."""
    return _overrides(connector_name, "holdings")


def can_remove(connector_name: str) -> bool:
    """The connector removes access no grant governs by itself (it overrides `remove_holding`)."""
    return _overrides(connector_name, "remove_holding")


def _overrides(connector_name: str, method: str) -> bool:
    try:
        cls = connector_class(connector_name)
    except (KeyError, ImportError):
        return False
    return getattr(cls, method) is not getattr(BaseConnector, method)


def drift_scope(system_id: int) -> QuerySet[Finding]:
    """This system's drift findings (their keys start with kind and system)."""
    return Finding.objects.filter(
        Q(kind=FindingKind.UNGOVERNED_ACCESS, key__startswith=f"{FindingKind.UNGOVERNED_ACCESS}:{system_id}:")
        | Q(kind=FindingKind.MISSING_AT_TARGET, key__startswith=f"{FindingKind.MISSING_AT_TARGET}:{system_id}:")
    )


def ungoverned_key(system_id: int, holding: Holding) -> str:
    """Readable when it can be; a hash when the names are long or hold the separator (so never ambiguous)."""
    prefix = f"{FindingKind.UNGOVERNED_ACCESS}:{system_id}:"
    key = f"{prefix}{holding.account}:{holding.target_name}"
    if len(key) <= KEY_MAX_LENGTH and ":" not in holding.account + holding.target_name:
        return key
    digest = hashlib.sha256(f"{holding.account}\x00{holding.target_name}".encode()).hexdigest()
    return f"{prefix}sha256:{digest}"


#
# Reconciling one system
#
def system_reconcile(*, system_id: int, actor: ActorLike = None, requested_by: str = "") -> dict[str, Any]:
    """Compare what the target grants with the grants in force of one system; store the drift.

    The target is called first, outside any transaction (call this with none open: from a task, an
    outbox handler or a command, never inside a web request); then one short transaction compares
    and stores. A target that fails raises (ConnectorError): nothing is stored, the findings stand.
    Returns counts; `can_tell` False when the connector cannot list holdings.
    """
    system = System.objects.select_related("owner").filter(pk=system_id).first()
    if system is None:
        raise ValidationFailed(f"System {system_id} does not exist.")
    _require_fixer(actor, system)
    if system.status != LifecycleStatus.ACTIVE:
        raise InvalidTransition(f"{system.name} is retired; there is nothing to reconcile.")
    started = clock.database_now()  # grants that change from here on are work in flight
    connector = connector_for(system)
    try:
        holdings = connector.holdings()
    except ConnectorError as exc:
        raise type(exc)(f"{system.connector} connector of {system.name}: {exc}") from exc
    except Exception as exc:
        raise RetriableError(f"{system.connector} connector of {system.name}: {type(exc).__name__}: {exc}") from exc
    if holdings is None:
        return {"system": system_id, "can_tell": False}
    return _reconcile_record(
        system_id=system_id,
        holdings=frozenset(holdings),
        started=started,
        connector=connector,
        actor=actor,
        requested_by=requested_by,
    )


@state_change
def _reconcile_record(
    *,
    system_id: int,
    holdings: frozenset[Holding],
    started: datetime,
    connector: BaseConnector,
    actor: ActorLike,
    requested_by: str,
) -> dict[str, Any]:
    """Compare and store, under the system's lock (two reconciliations of one system take turns)."""
    system = lock(System, system_id)
    if system.last_reconciled_at is not None and system.last_reconciled_at >= started:
        # A reconciliation that read the target later has recorded already: this one's view is older.
        return {"system": system_id, "can_tell": True, "superseded": True}
    now = clock.database_now()
    owner = Identity.objects.filter(pk=system.owner_id).values_list("status", flat=True).first()
    owner_to_act = system.owner_id if owner == IdentityStatus.ACTIVE else None

    entitlements = list(Entitlement.objects.filter(system_id=system_id).only(*_ENTITLEMENT_FIELDS))
    expected, known = _governed(system_id, connector, entitlements, started=started, now=now)
    ungoverned = sorted(holdings - known)
    missing = sorted((holding, grant) for holding, grant in expected.items() if holding not in holdings)

    found: dict[str, Candidate] = {}
    for candidate in _ungoverned_candidates(system, connector, ungoverned, entitlements, owner_to_act):
        found[candidate.key] = candidate
    for holding, grant in missing:
        candidate = _missing_candidate(system, holding, grant, owner_to_act)
        found[candidate.key] = candidate

    summary = findings_store(
        found=found, in_scope=drift_scope(system_id), now=now, kept_details=REMOVAL_DETAILS, refresh_links=True
    )
    System.objects.filter(pk=system_id).update(last_reconciled_at=now)  # no history row: not a change of the system
    counts = {
        "holdings": len(holdings),
        "grants_in_force": len(expected),
        "ungoverned": len(ungoverned),
        "missing": len(missing),
        **{k: summary[k] for k in ("opened", "still_open", "resolved")},
    }
    audit_event_record(
        actor=actor,
        action=AuditAction.SYSTEM_RECONCILED,
        target=system,
        data={**counts, **({"requested_by": requested_by} if requested_by else {})},
    )
    return {"system": system_id, "can_tell": True, **counts}


@dataclass(frozen=True, order=True)
class _InForce:
    """A grant in force, as much of it as a finding names."""

    pk: int
    identity_id: int
    entitlement_id: int
    identity_name: str
    entitlement_name: str


# What naming an identity or an entitlement on a target reads (connectors.BaseConnector.account_for and
# target_name_for): loaded alone, so that 100,000 grants cost a second, not a minute of model building.
# A connector that reads more fields still works, a query per row slower.
_IDENTITY_FIELDS = ("id", "name", "kind", "status", "external_id", "email", "user", "user__username")
_ENTITLEMENT_FIELDS = ("id", "name", "target_name", "status", "system_id")


def _governed(
    system_id: int, connector: BaseConnector, entitlements: list[Entitlement], *, started: datetime, now: datetime
) -> tuple[dict[Holding, _InForce], set[Holding]]:
    """What the target should hold (grants in force before the holdings were read), and everything a
    grant explains (those, plus work in flight and grants that ended while the holdings were read).

    Two queries, whatever the number of grants: the grants as rows, then their holders.
    """
    ended = [GrantStatus.EXPIRED, GrantStatus.REVOKED]
    grants = Grant.objects.filter(entitlement__system_id=system_id).filter(
        Q(status__in=GrantStatus.live()) | Q(status__in=ended, revoked_at__gte=started)
    )
    rows = list(grants.values_list("pk", "identity_id", "entitlement_id", "status", "expires_at", "granted_at"))
    if not rows:
        return {}, set()
    holders = Identity.objects.filter(pk__in=grants.values("identity_id")).select_related("user")
    names: dict[int, tuple[str, str]] = {}  # identity id: (account on the target, name)
    for identity in holders.only(*_IDENTITY_FIELDS):
        try:
            names[identity.pk] = (connector.account_for(identity), identity.name)
        except ConnectorError:
            continue  # no account name on the target: the connector could not have put it there
    targets = {e.pk: (connector.target_name_for(e), e.name) for e in entitlements}
    expected: dict[Holding, _InForce] = {}
    known: set[Holding] = set()
    for pk, identity_id, entitlement_id, status, expires_at, granted_at in rows:
        if identity_id not in names:
            continue
        (account, identity_name), (target_name, entitlement_name) = names[identity_id], targets[entitlement_id]
        holding = Holding(account, target_name)
        known.add(holding)
        in_force = status == GrantStatus.ACTIVE and (expires_at is None or expires_at > now)
        if in_force and granted_at is not None and granted_at < started:
            expected[holding] = _InForce(pk, identity_id, entitlement_id, identity_name, entitlement_name)
    return expected, known


def _identities_by_account(connector: BaseConnector, accounts: set[str]) -> dict[str, Identity | None]:
    """The identity each account name belongs to (None when several do): one query per 10,000 names."""
    lookup = ACCOUNT_LOOKUPS.get(connector.settings.get("account_attribute") or "external_id")
    if lookup is None or not accounts:
        return {}
    names = sorted(accounts)
    mapped: dict[str, Identity | None] = {}
    for start in range(0, len(names), _LOOKUP_BATCH):
        batch = names[start : start + _LOOKUP_BATCH]
        found = Identity.objects.filter(**{f"{lookup}__in": batch}).select_related("user").only(*_IDENTITY_FIELDS)
        for identity in found:
            try:
                account = connector.account_for(identity)
            except ConnectorError:
                continue
            if account in accounts:
                mapped[account] = None if account in mapped else identity
    return mapped


def _entitlements_by_target_name(
    connector: BaseConnector, entitlements: list[Entitlement]
) -> dict[str, Entitlement | None]:
    """The live entitlement of this system each target name belongs to (None when several do)."""
    mapped: dict[str, Entitlement | None] = {}
    for entitlement in entitlements:
        if entitlement.status == LifecycleStatus.ACTIVE:
            name = connector.target_name_for(entitlement)
            mapped[name] = None if name in mapped else entitlement
    return mapped


def _ungoverned_candidates(
    system: System,
    connector: BaseConnector,
    holdings: list[Holding],
    entitlements: list[Entitlement],
    owner_to_act: int | None,
) -> list[Candidate]:
    if not holdings:
        return []
    identities = _identities_by_account(connector, {h.account for h in holdings})
    by_target_name = _entitlements_by_target_name(connector, entitlements)
    candidates = []
    for holding in holdings:
        identity, entitlement = identities.get(holding.account), by_target_name.get(holding.target_name)
        whose = (
            f" (the account of {identity.name})" if identity is not None and identity.name != holding.account else ""
        )
        what = f" ({entitlement.name})" if entitlement is not None and entitlement.name != holding.target_name else ""
        candidates.append(
            Candidate(
                key=ungoverned_key(system.pk, holding),
                kind=FindingKind.UNGOVERNED_ACCESS,
                severity=Severity.HIGH,
                owner_to_act_id=owner_to_act,
                identity_id=identity.pk if identity is not None else None,
                entitlement_id=entitlement.pk if entitlement is not None else None,
                subject=f"{holding.account} holds {holding.target_name} on {system.name}",
                reason=f"{system.name} grants {holding.target_name}{what} to {holding.account}{whose}, and no grant "
                "in the portal governs it: revoke it at the target, or adopt it as a standing grant and have it reviewed.",
                extra={
                    "account": holding.account,
                    "target_name": holding.target_name,
                    "system": system.pk,
                    "system_name": system.name,
                },
            )
        )
    return candidates


def _missing_candidate(system: System, holding: Holding, grant: _InForce, owner_to_act: int | None) -> Candidate:
    return Candidate(
        key=f"{FindingKind.MISSING_AT_TARGET}:{system.pk}:{grant.pk}",
        kind=FindingKind.MISSING_AT_TARGET,
        severity=Severity.MEDIUM,
        owner_to_act_id=owner_to_act,
        identity_id=grant.identity_id,
        entitlement_id=grant.entitlement_id,
        grant_id=grant.pk,
        subject=f"{grant.identity_name} holds {system.name} / {grant.entitlement_name}",
        reason=f"Grant #{grant.pk} is active, but {system.name} does not grant {holding.target_name} to "
        f"{holding.account}: provision it again, or revoke the grant.",
        extra={
            "account": holding.account,
            "target_name": holding.target_name,
            "system": system.pk,
            "system_name": system.name,
        },
    )


#
# On a schedule, and on request
#
def systems_reconcile_due(*, now: datetime | None = None, limit: int = 100) -> dict[str, Any]:
    """Reconcile every active system whose connector can tell and whose last reconciliation is older
    than RECONCILE_INTERVAL_MINUTES, oldest first, each on its own. A failing target is logged, its
    owner and the admins are told (once a day), and the others go on."""
    now = now or clock.database_now()
    cutoff = now - timedelta(minutes=settings.RECONCILE_INTERVAL_MINUTES)
    telling = [name for name in CONNECTORS if can_tell(name)]
    due = (
        System.objects.filter(status=LifecycleStatus.ACTIVE, connector__in=telling)
        .filter(Q(last_reconciled_at__isnull=True) | Q(last_reconciled_at__lte=cutoff))
        .order_by(F("last_reconciled_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)[:limit]
    )
    reconciled, failed = [], []
    for pk in list(due):
        try:
            result = system_reconcile(system_id=pk, actor=Actor.system())
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("Reconciling system %s failed: %s", pk, error)
            failed.append({"system": pk, "error": error})
            system_reconcile_failed(system_id=pk, error=error)
            continue
        if result.get("can_tell"):
            reconciled.append(result)
    return {
        "reconciled": len(reconciled),
        "ungoverned": sum(r.get("ungoverned", 0) for r in reconciled),
        "missing": sum(r.get("missing", 0) for r in reconciled),
        "failed": failed,
    }


def _link(name: str, *args: Any) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:  # the pages are not mounted (a shell, a worker before the urls load)
        return ""


def _tell_owner_and_admins(system: System, *, kind: str, subject: str, body: str, key: str) -> None:
    admins = get_user_model().objects.filter(groups__name=Role.ADMIN, is_active=True)
    recipients = {user.pk: user for user in [*users_of(system.owner), *admins]}
    notify(
        recipients=list(recipients.values()),
        kind=kind,
        subject=subject,
        body=body,
        link=_link("governance:system_detail", system.pk),
        key=key,
    )


@state_change
def system_reconcile_failed(*, system_id: int, error: str) -> None:
    """A target that could not be read: its owner and the admins hear of it once a day, not every run."""
    system = System.objects.select_related("owner__user").get(pk=system_id)
    _tell_owner_and_admins(
        system,
        kind="system.reconcile_failed",
        subject=f"{system.name} could not be reconciled with its target",
        body=f"Reading what {system.name} grants failed: {error}\nUntil it works, drift there goes unseen. "
        "Test the connection from the system's page.",
        key=f"system:{system.pk}:reconcile_failed:{clock.database_now():%Y-%m-%d}",
    )


@state_change
def system_reconcile_request(*, system_id: int, actor: ActorLike) -> bool:
    """Ask a worker to reconcile the system now (the web never waits on a target). False when one is
    asked already and not yet done: a second click adds nothing."""
    system = lock(System, system_id)
    _require_fixer(actor, system)
    if system.status != LifecycleStatus.ACTIVE:
        raise InvalidTransition(f"{system.name} is retired; there is nothing to reconcile.")
    if not can_tell(system.connector):
        raise ValidationFailed(
            f"The {system.connector} connector cannot list what {system.name} grants, so it cannot be reconciled."
        )
    if OutboxMessage.objects.filter(kind=RECONCILE, status=OutboxStatus.PENDING, payload__system_id=system_id).exists():
        return False
    user = acting_user(actor)
    outbox_enqueue(
        kind=RECONCILE,
        payload={"system_id": system_id, "requested_by": user.get_username() if user is not None else ""},
        idempotency_key=f"system:{system_id}:reconcile:{uuid.uuid4().hex}",
    )
    return True


def _reconcile_gave_up(payload, error: str) -> None:
    system_reconcile_failed(system_id=payload["system_id"], error=error)


@outbox_handler(RECONCILE, on_dead=_reconcile_gave_up)
def reconcile_requested(payload, idempotency_key) -> None:
    """Reconcile now, as asked from a page: in the dispatcher, outside any transaction."""
    system = System.objects.filter(pk=payload["system_id"]).values_list("status", "connector").first()
    if system is None or system[0] != LifecycleStatus.ACTIVE or not can_tell(system[1]):
        return
    system_reconcile(system_id=payload["system_id"], actor=Actor.system(), requested_by=payload["requested_by"])


#
# Fixes
#
def _authorise(finding_id: int, actor: ActorLike) -> tuple[Finding, System]:
    """The finding (as read, unlocked) and its system, once the actor may act on it: refused before
    anything about the finding's state is said. Only an admin hears that a finding is not drift."""
    finding = Finding.objects.filter(pk=finding_id).first()
    if finding is None:
        raise ValidationFailed(f"Finding {finding_id} does not exist.")
    system = None
    if finding.kind in DRIFT_KINDS:
        system = System.objects.filter(pk=finding.details.get("system")).first()
    if system is None:
        check(actor, lambda user, _f: can_fix_drift(user, None), finding, "Only an admin may act on this finding.")
        raise ValidationFailed(f"Finding {finding.pk} is not drift found on a system's target.")
    _require_fixer(actor, system)
    return finding, system


def _open_drift(finding_id: int, kind: str) -> Finding:
    finding = lock(Finding, finding_id)
    if finding.kind != kind:
        raise ValidationFailed(f"Finding {finding.pk} is not “{FindingKind(kind).label}”.")
    if finding.status != FindingStatus.OPEN:
        raise InvalidTransition(f"Finding {finding.pk} is resolved already.")
    return finding


def _finding_target(finding: Finding) -> Target:
    return Target("governance.finding", str(finding.pk), str(finding)[:200])


def _resolve(finding: Finding, actor: ActorLike, now: datetime, **why: Any) -> None:
    finding.status, finding.resolved_at = FindingStatus.RESOLVED, now
    finding.save(update_fields=["status", "resolved_at", "details"])
    audit_event_record(
        actor=actor,
        action=AuditAction.FINDING_RESOLVED,
        target=_finding_target(finding),
        data={"resolved_at": now, **why},
    )


@state_change
def finding_revoke_at_target(*, finding_id: int, actor: ActorLike) -> Finding:
    """Ask the target to remove access no grant governs; the finding resolves when it confirms.

    Asking again while an ask is on its way is a no-op; after a failed removal it asks anew.
    """
    _seen, system = _authorise(finding_id, actor)
    finding = _open_drift(finding_id, FindingKind.UNGOVERNED_ACCESS)
    if not can_remove(system.connector):
        raise ValidationFailed(
            f"The {system.connector} connector cannot remove access from {system.name} by itself: "
            "remove it there by hand, and the next reconciliation resolves this finding."
        )
    details = finding.details
    asks = details.get("removal_asks", 0)
    if asks and not details.get("removal_error"):
        last = OutboxMessage.objects.filter(idempotency_key=_removal_key(finding.pk, asks)).values_list(
            "status", flat=True
        )
        if last.first() == OutboxStatus.PENDING:
            return finding  # on its way already
    now = clock.database_now()
    asks += 1
    outbox_enqueue(
        kind=REMOVE_HOLDING,
        payload={
            "finding_id": finding.pk,
            "system_id": system.pk,
            "account": details["account"],
            "target_name": details["target_name"],
        },
        idempotency_key=_removal_key(finding.pk, asks),
    )
    finding.details = {**details, "removal_asks": asks, "removal_asked_at": now.isoformat(), "removal_error": ""}
    finding.save(update_fields=["details"])
    audit_event_record(
        actor=actor,
        action=AuditAction.HOLDING_REVOKE_REQUESTED,
        target=_finding_target(finding),
        data={"system": system.pk, "account": details["account"], "target_name": details["target_name"]},
    )
    return finding


def _removal_key(finding_id: int, ask: int) -> str:
    return f"finding:{finding_id}:remove_holding:{ask}"


@state_change
def holding_removal_confirmed(*, finding_id: int, actor: ActorLike, confirmation: str = "") -> Finding:
    """The target removed the access: recorded once (a repeated delivery adds nothing); the finding resolves."""
    finding = lock(Finding, finding_id)
    if finding.details.get("removed_at"):
        return finding
    now = clock.database_now()
    details = finding.details
    finding.details = {**details, "removed_at": now.isoformat(), "removal_error": ""}
    audit_event_record(
        actor=actor,
        action=AuditAction.HOLDING_REVOKED,
        target=_finding_target(finding),
        data={
            "system": details.get("system"),
            "account": details.get("account"),
            "target_name": details.get("target_name"),
            **({"confirmation": confirmation} if confirmation else {}),
        },
    )
    if finding.status == FindingStatus.OPEN:
        _resolve(finding, actor, now, removed_at_target=True)
    else:
        finding.save(update_fields=["details"])
    return finding


@state_change
def holding_removal_failed(*, finding_id: int, error: str) -> None:
    """The target would not remove it: shown on the finding, the system's owner told; asked again by a click."""
    finding = lock(Finding, finding_id)
    finding.details = {**finding.details, "removal_error": error[:500]}
    finding.save(update_fields=["details"])
    system = System.objects.select_related("owner__user").filter(pk=finding.details.get("system")).first()
    if system is not None:
        _tell_owner_and_admins(
            system,
            kind="system.holding_removal_failed",
            subject=f"{finding.details.get('account')}'s {finding.details.get('target_name')} on {system.name} "
            "could not be removed",
            body=f"The system answered: {error[:500]}\nFix the cause and ask again from the findings page, "
            "or remove it by hand.",
            key=f"finding:{finding.pk}:removal_failed:{finding.details.get('removal_asks', 0)}",
        )


def _removal_gave_up(payload, error: str) -> None:
    holding_removal_failed(finding_id=payload["finding_id"], error=error)


@outbox_handler(REMOVE_HOLDING, on_dead=_removal_gave_up)
def remove_holding(payload, idempotency_key) -> None:
    """Remove ungoverned access at the target (outside any transaction); record it when confirmed.

    PENDING (a person or the target finishes later): the next reconciliation resolves the finding.
    """
    system = System.objects.get(pk=payload["system_id"])
    holding = Holding(payload["account"], payload["target_name"])
    where = f"{system.connector} connector of {system.name}"
    try:
        result = Result.of(connector_for(system).remove_holding(holding))
    except ConnectorError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    except Exception as exc:
        raise RetriableError(f"{where}: {type(exc).__name__}: {exc}") from exc
    if result.outcome is Outcome.CONFIRMED:
        holding_removal_confirmed(finding_id=payload["finding_id"], actor=Actor.system(), confirmation=result.detail)


@state_change
def finding_adopt(*, finding_id: int, actor: ActorLike) -> Grant:
    """Adopt access found on the target as a standing grant, and send it to its entitlement's owner to review.

    The access exists already, so the grant is active at once and no connector is called. It is not a
    decision that the access is right: the micro-review is where its owner attests or revokes it. The
    holder must be active and of a kind the entitlement allows; otherwise revoke it at the target.
    Locks: identity, system (shared), entitlement (shared), then the finding (lock order of `locks`).
    """
    seen, system = _authorise(finding_id, actor)
    if seen.kind == FindingKind.UNGOVERNED_ACCESS and (seen.identity_id is None or seen.entitlement_id is None):
        raise ValidationFailed(
            "This access maps to no single identity and entitlement in the inventory, so it cannot be adopted: "
            "register them (or name the account and target name on them), or revoke it at the target."
        )
    if seen.kind != FindingKind.UNGOVERNED_ACCESS:
        _open_drift(finding_id, FindingKind.UNGOVERNED_ACCESS)  # says why, with the finding's state
    identity = lock(Identity, seen.identity_id)
    entitlement = hold_entitlement(seen.entitlement_id)
    finding = _open_drift(finding_id, FindingKind.UNGOVERNED_ACCESS)
    if (finding.identity_id, finding.entitlement_id) != (identity.pk, entitlement.pk):
        raise InvalidTransition("The finding changed meanwhile; look at it again.")
    if entitlement.system_id != system.pk:
        raise InvalidTransition("The finding changed meanwhile; look at it again.")
    if identity.status != IdentityStatus.ACTIVE:
        raise ValidationFailed(
            f"{identity.name} is {identity.get_status_display().lower()}: revoke the access at the target instead."
        )
    if not entitlement.is_live or system.status != LifecycleStatus.ACTIVE:
        raise ValidationFailed(f"{entitlement} is retired: revoke the access at the target instead.")
    if entitlement.allowed_identity_kinds and identity.kind not in entitlement.allowed_identity_kinds:
        raise ValidationFailed(
            f"{entitlement} may not be held by a {identity.get_kind_display().lower()}: revoke it at the target instead."
        )
    if Grant.objects.live().filter(identity=identity, entitlement=entitlement).exists():
        raise InvalidTransition(f"{identity} has a grant of {entitlement} already; reconcile again.")
    now = clock.database_now()
    details = finding.details
    grant = Grant.objects.create(
        identity=identity,
        entitlement=entitlement,
        kind=GrantKind.STANDING,
        status=GrantStatus.ACTIVE,
        granted_at=now,
        reason=(
            f"Adopted from finding #{finding.pk}: {details['account']} held {details['target_name']} on "
            f"{system.name} with no grant."
        )[:FREE_TEXT_MAX_LENGTH],
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_ADOPTED,
        target=grant,
        data={
            "identity": identity.pk,
            "entitlement": entitlement.pk,
            "kind": grant.kind,
            "status": grant.status,
            "finding": finding.pk,
            "account": details["account"],
            "target_name": details["target_name"],
        },
    )
    finding.grant = grant
    finding.save(update_fields=["grant"])
    _resolve(finding, actor, now, adopted_as_grant=grant.pk)
    micro_review_adopted(grant, system=system, account=details["account"])
    _ask_connector(grant, EXTEND)  # a target keeping its own end (postgresql's VALID UNTIL) learns it is standing
    return grant


def micro_review_adopted(grant: Grant, *, system: System, account: str):
    """The adopted grant in front of its entitlement's owner (attest or revoke), as any micro-review."""
    return _micro_review(
        f"{grant.identity.name} adopted on {system.name} / {grant.entitlement.name}",
        f"{account} held {grant.entitlement.name} on {system.name} with no grant; it was adopted as standing "
        f"access (grant #{grant.pk}). Should {grant.identity.name} keep it?",
        ReviewerSource.ENTITLEMENT_OWNER,
        Grant.objects.filter(pk=grant.pk),
    )


@state_change
def finding_reprovision(*, finding_id: int, actor: ActorLike) -> Grant:
    """Put a grant the target lacks back to pending provisioning and ask the connector again.

    The finding resolves now: the grant is work in flight until the connector confirms (or gives up,
    when it shows as a failed provisioning with its own retry).
    Locks: the grant, then the finding.
    """
    seen, _system = _authorise(finding_id, actor)
    if seen.kind != FindingKind.MISSING_AT_TARGET or seen.grant_id is None:
        _open_drift(finding_id, FindingKind.MISSING_AT_TARGET)  # says why, with the finding's state
        raise ValidationFailed(f"Finding {finding_id} names no grant to provision again.")
    grant = lock(Grant, seen.grant_id)
    finding = _open_drift(finding_id, FindingKind.MISSING_AT_TARGET)
    now = clock.database_now()
    if not grant.is_in_force(now):
        raise InvalidTransition(f"Grant #{grant.pk} is no longer active: nothing to provision again.")
    grant.status = GrantStatus.PENDING_PROVISION
    grant.save(update_fields=["status", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_PROVISION_RETRIED,
        target=grant,
        data={"reprovision": True, "finding": finding.pk, "reason": "missing at the target"},
    )
    _ask_connector(grant, PROVISION)
    _resolve(finding, actor, now, reprovisioned=grant.pk)
    return grant
