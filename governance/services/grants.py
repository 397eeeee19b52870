"""Grant lifecycle: create, confirm provisioning, revoke, confirm removal, and the connector's failures.

Intent and fact stay apart: `grant_revoke` only moves a grant to `revoking` and asks the
connector through the outbox; the grant is `revoked` (or `expired`) when the target confirms.
"""

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Q
from django.urls import reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.models import OutboxMessage
from audit.outbox import enqueue_many, outbox_enqueue, wake_dispatcher_on_commit
from audit.services import (
    Actor,
    ActorLike,
    EventSpec,
    Target,
    acting_user,
    audit_event_record,
    audit_events_record_many,
    state_change,
)

from .. import policies
from ..choices import GrantKind, GrantStatus, IdentityKind, IdentityStatus, SodAction
from ..connectors import CONNECTOR_KEY_PREFIX, connector_key, connector_key_suffix
from ..errors import InvalidTransition, PermissionRefused, ValidationFailed
from ..locks import hold_entitlement, lock
from ..models import Entitlement, Grant, Identity, SodRule
from ..roles import Role
from .common import check, is_system
from .findings import findings_recheck_on_commit
from .notifications import Notice, holders_of, notify, notify_many, users_of

PROVISION, REVOKE, EXTEND = "connector.provision", "connector.revoke", "connector.extend"
END_EXPIRED = "expired"
AUDITED = ["identity_id", "entitlement_id", "kind", "status", "expires_at", "approved_duration"]


def _grant_data(grant: Grant, **extra) -> dict:
    data = {
        "identity": grant.identity_id,
        "entitlement": grant.entitlement_id,
        "kind": grant.kind,
        "status": grant.status,
        "expires_at": grant.expires_at,
        "approved_duration": grant.approved_duration,
    }
    data.update(extra)
    return data


def _ask_connector(grant: Grant, kind: str) -> None:
    attempt = Grant.history.filter(id=grant.pk).count()  # a fresh key for each new ask of the same grant
    outbox_enqueue(kind=kind, payload={"grant_id": grant.pk}, idempotency_key=connector_key(grant.pk, kind, attempt))


@state_change
def grant_create(
    *,
    actor: ActorLike,
    identity: Identity,
    entitlement: Entitlement,
    kind: str = GrantKind.STANDING,
    duration: timedelta | None = None,
    reason: str = "",
) -> Grant:
    """Grant access directly (the entitlement's owners or an admin), without a request.

    No approval workflow stands behind it, so the catalogue's limits are enforced here and nobody
    grants to themself or to an identity they own: that access goes through a request.
    """
    check(actor, policies.can_manage_grants, entitlement, "Only the entitlement's owners or an admin may grant it.")
    me = None if is_system(actor) else policies.identity_of(acting_user(actor))
    if me is not None and me.pk in (identity.pk, identity.owner_id, identity.backup_owner_id):
        raise PermissionRefused("Nobody grants access to themself or to an identity they own; request it instead.")
    if entitlement.allowed_identity_kinds and identity.kind not in entitlement.allowed_identity_kinds:
        raise ValidationFailed(
            f"{entitlement} may not be held by a {identity.get_kind_display().lower()}.",
            field_errors={"identity": ["This kind of identity may not hold this entitlement."]},
        )
    if kind != GrantKind.STANDING and duration and duration > entitlement.effective_max_duration:
        raise ValidationFailed(
            f"{entitlement} may be granted for at most {entitlement.effective_max_duration}.",
            field_errors={"duration": [f"At most {entitlement.effective_max_duration}."]},
        )
    return grant_issue(
        actor=actor, identity=identity, entitlement=entitlement, kind=kind, duration=duration, reason=reason
    )


@state_change
def grant_issue(
    *,
    actor: ActorLike,
    identity: Identity,
    entitlement: Entitlement,
    kind: str = GrantKind.STANDING,
    duration: timedelta | None = None,
    reason: str = "",
    request_id: int | None = None,
) -> Grant:
    """Record a grant as pending provisioning and ask the system's connector to make it real.

    `request_id` names the access request it fulfils in the trail, so an auditor can go from the
    grant's events to the request's justification and decisions.

    Callers have authorised it already (an owner via `grant_create`, or a finished approval
    workflow). A time-boxed grant's clock starts when the connector confirms (expires =
    activation + duration).
    """
    identity = lock(Identity, identity.pk)
    # Held (its system first, as retirement locks them) and read again: an entitlement or system
    # retired meanwhile refuses the grant here, and a retirement after this waits, then revokes it.
    # A share lock: grants of one entitlement are issued side by side.
    entitlement = hold_entitlement(entitlement.pk)
    if identity.status != IdentityStatus.ACTIVE:
        raise ValidationFailed(f"{identity} is {identity.get_status_display().lower()}; it cannot receive access.")
    if not entitlement.is_live or entitlement.system.status != "active":
        raise ValidationFailed(f"{entitlement} is retired.")
    if kind != GrantKind.STANDING and not duration:
        raise ValidationFailed("A time-boxed grant needs a duration.", field_errors={"duration": ["Required."]})
    held = set(Grant.objects.live().filter(identity=identity).values_list("entitlement_id", flat=True))
    if entitlement.pk in held:
        raise InvalidTransition(f"{identity} already holds {entitlement}.")
    _refuse_blocked_combination(identity, entitlement, held)
    grant = Grant.objects.create(
        identity=identity,
        entitlement=entitlement,
        kind=kind,
        approved_duration=duration,
        reason=reason,
        status=GrantStatus.PENDING_PROVISION,
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_CREATED,
        target=grant,
        data=_grant_data(grant, reason=reason, **({"request": request_id} if request_id else {})),
    )
    _ask_connector(grant, PROVISION)
    return grant


@state_change
def grant_confirm_provisioned(*, grant_id: int, actor: ActorLike, reference: str = "", confirmation: str = "") -> Grant:
    """The target confirmed the access: the grant becomes active and its clock starts now.

    `confirmation` is what the connector saw the target do, kept on the audit event.
    """
    grant = lock(Grant, grant_id)
    check(actor, policies.can_confirm_provisioning, grant, "Only the system's owner may confirm provisioning.")
    if grant.status == GrantStatus.ACTIVE:
        return grant  # a repeated confirmation (callback retry, double click) changes nothing
    if grant.status not in (GrantStatus.PENDING_PROVISION, GrantStatus.PROVISION_FAILED):
        raise InvalidTransition(f"Grant #{grant.pk} is {grant.get_status_display().lower()}; nothing to confirm.")
    now = clock.database_now()
    # A break-glass grant's end was fixed at activation (its hard cap): a late confirmation starts its
    # clock but never moves that end later, and one that arrives after it removes the access at once.
    hard_end = grant.expires_at if grant.kind == GrantKind.BREAK_GLASS else None
    if hard_end is not None and hard_end <= now:
        grant.status, grant.end_reason, grant.connector_reference = GrantStatus.REVOKING, END_EXPIRED, reference
        grant.save(update_fields=["status", "end_reason", "connector_reference", "updated_at"])
        audit_event_record(
            actor=actor,
            action=AuditAction.GRANT_REVOKE_REQUESTED,
            target=grant,
            data={"reason": "confirmed after its hard end", "end_reason": END_EXPIRED},
        )
        _ask_connector(grant, REVOKE)
        return grant
    # Provisioned again (reconciliation found it missing at the target): it keeps its clock, never extended.
    reprovisioned = grant.granted_at is not None
    grant.status, grant.connector_reference, grant.last_error = GrantStatus.ACTIVE, reference, ""
    if not reprovisioned:
        grant.granted_at = now
    if grant.approved_duration and not reprovisioned:
        grant.expires_at = now + grant.approved_duration
        if hard_end is not None:
            grant.expires_at = min(grant.expires_at, hard_end)
    grant.save(update_fields=["status", "granted_at", "expires_at", "connector_reference", "last_error", "updated_at"])
    data = _grant_data(grant, confirmation=confirmation) if confirmation else _grant_data(grant)
    audit_event_record(actor=actor, action=AuditAction.GRANT_ACTIVATED, target=grant, data=data)
    until = f" until {grant.expires_at:%Y-%m-%d %H:%M} UTC" if grant.expires_at else ""
    _tell_holders(
        grant,
        kind="grant.active",
        subject=f"{grant.entitlement.name} on {grant.entitlement.system.name} is active for {grant.identity.name}{until}",
        body="The system confirmed the access.",
        key=f"grant:{grant.pk}:active",
    )
    return grant


def _tell_holders(grant: Grant, *, kind: str, subject: str, body: str, key: str) -> None:
    notify(
        recipients=holders_of(grant.identity),
        kind=kind,
        subject=subject,
        body=body,
        link=reverse("governance:grant_detail", args=[grant.pk]),
        key=key,
    )


@state_change
def grant_provision_failed(*, grant_id: int, actor: ActorLike, error: str) -> Grant:
    """The connector gave up provisioning (its outbox message went dead): visible, and retried by the system owner."""
    grant = lock(Grant, grant_id)
    if grant.status != GrantStatus.PENDING_PROVISION:
        return grant
    grant.status, grant.last_error = GrantStatus.PROVISION_FAILED, error[:2000]
    grant.save(update_fields=["status", "last_error", "updated_at"])
    audit_event_record(
        actor=actor, action=AuditAction.GRANT_PROVISION_FAILED, target=grant, data={"error": error[:500]}
    )
    _tell_system_owner(grant, "could not be granted", error)
    return grant


def _tell_system_owner(grant: Grant, what: str, error: str) -> None:
    """The system's owner and the admins: a connector that gave up is a fault someone must fix."""
    system = grant.entitlement.system
    admins = list(get_user_model().objects.filter(groups__name=Role.ADMIN, is_active=True))
    notify(
        recipients=list({user.pk: user for user in [*users_of(system.owner), *admins]}.values()),
        kind="grant.connector_failed",
        subject=f"{grant.entitlement.name} on {system.name} for {grant.identity.name} {what}",
        body=f"The system answered: {error[:500]}\nFix the cause, then retry or confirm by hand from the grant's page.",
        link=reverse("governance:grant_detail", args=[grant.pk]),
        key=f"grant:{grant.pk}:failed:{grant.updated_at.timestamp()}",
    )


@state_change
def grant_revoke(*, grant_id: int, actor: ActorLike, reason: str, end_reason: str = "revoked") -> Grant:
    """Ask the target to remove access; the grant is `revoking` until the connector confirms.

    Revoking a grant that is already being removed or has ended is a no-op, so offboarding,
    expiry and a person's click can all ask at once.
    """
    grant = lock(Grant, grant_id)
    check(
        actor,
        policies.can_revoke_grant,
        grant,
        "You may not revoke this grant.",
        machine_may=lambda machine, g: g.identity_id == machine.pk,  # a machine gives back its own access
    )
    if grant.status in (GrantStatus.REVOKING, GrantStatus.REVOKED, GrantStatus.EXPIRED):
        return grant
    if grant.status == GrantStatus.PROVISION_FAILED:
        grant.status, grant.revoked_at, grant.end_reason = GrantStatus.REVOKED, clock.database_now(), end_reason
        grant.save(update_fields=["status", "revoked_at", "end_reason", "updated_at"])
        audit_event_record(actor=actor, action=AuditAction.GRANT_REVOKED, target=grant, data={"reason": reason})
        return grant
    grant.status, grant.end_reason = GrantStatus.REVOKING, end_reason
    user = acting_user(actor)
    grant.revoked_by = user if getattr(user, "is_authenticated", False) else None
    grant.save(update_fields=["status", "end_reason", "revoked_by", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_REVOKE_REQUESTED,
        target=grant,
        data={"reason": reason, "end_reason": end_reason},
    )
    _ask_connector(grant, REVOKE)
    findings_recheck_on_commit([grant.identity_id])  # no longer in force: its findings close at once
    return grant


# What a revocation moves each status to: access that may exist is asked to go; access that was
# never provisioned is simply revoked. Anything else (being removed, ended) is left as it is.
_REVOCABLE = (
    GrantStatus.PENDING_PROVISION,
    GrantStatus.ACTIVE,
    GrantStatus.REVOKE_FAILED,
    GrantStatus.PROVISION_FAILED,
)
_REVOKE_BATCH = 1000


def _history_insert_sql() -> str:
    """INSERT ... SELECT of the grants' rows as they now are into their history (simple-history's table)."""
    history = Grant.history.model._meta
    columns = [f.column for f in Grant._meta.concrete_fields]
    return (
        f"INSERT INTO {history.db_table} ({', '.join(columns)}, history_date, history_change_reason, history_type,"
        f" history_user_id) SELECT {', '.join(columns)}, %s, %s, '~', %s"
        f" FROM {Grant._meta.db_table} WHERE id = ANY(%s)"
    )


_PG_REVOKE_BATCH = """
    WITH target AS (
        SELECT id FROM governance_grant WHERE id = ANY(%(ids)s) AND status = ANY(%(revocable)s)
        ORDER BY id FOR NO KEY UPDATE
    )
    UPDATE governance_grant AS g
    SET status = CASE WHEN g.status = 'provision_failed' THEN 'revoked' ELSE 'revoking' END,
        revoked_at = CASE WHEN g.status = 'provision_failed' THEN %(now)s ELSE g.revoked_at END,
        end_reason = %(end_reason)s, revoked_by_id = %(user)s, updated_at = %(now)s
    FROM target WHERE g.id = target.id
    RETURNING g.id, g.status, g.identity_id, g.entitlement_id
"""
_PG_ENQUEUE_REVOKES = """
    INSERT INTO audit_outboxmessage
        (kind, payload, idempotency_key, status, attempts, next_attempt_at, last_error, created_at)
    SELECT %s, jsonb_build_object('grant_id', id), %s || id || %s, 'pending', 0,
           %s, '', %s
    FROM unnest(%s::bigint[]) AS id
    ON CONFLICT (idempotency_key) DO NOTHING
"""


def enqueue_revokes(ids: list[int], *, ask: str, attempt: object = None) -> None:
    """Ask each grant's connector to remove it: one outbox row per grant, set-based (sweeps, bulk
    revocation). Each is keyed `connector_key(id, ask, attempt)`, so the same ask twice is one message."""
    if not ids:
        return
    if connection.vendor != "postgresql":
        enqueue_many(
            [
                OutboxMessage(kind=REVOKE, payload={"grant_id": pk}, idempotency_key=connector_key(pk, ask, attempt))
                for pk in ids
            ]
        )
        return
    with connection.cursor() as cursor:
        now = clock.database_now()
        suffix = connector_key_suffix(ask, attempt)
        cursor.execute(_PG_ENQUEUE_REVOKES, [REVOKE, CONNECTOR_KEY_PREFIX, suffix, now, now, ids])
    wake_dispatcher_on_commit()


def _revoke_batch_pg(ids: list[int], *, user_id: int | None, note: str, end_reason: str) -> list[tuple]:
    now = clock.database_now()
    with connection.cursor() as cursor:
        cursor.execute(
            _PG_REVOKE_BATCH,
            {"ids": ids, "revocable": list(_REVOCABLE), "end_reason": end_reason, "user": user_id, "now": now},
        )
        rows = sorted(cursor.fetchall())
        changed = [row[0] for row in rows]
        if changed:
            cursor.execute(
                _history_insert_sql(), [now, note[:100], user_id, changed]
            )  # the change's time, as in the rows themselves
    return rows


def _revoke_batch_orm(ids: list[int], *, user_id: int | None, note: str, end_reason: str) -> list[tuple]:
    """The embedded database's form (SQLite: one writer at a time, so no row locks to take)."""
    found = list(
        Grant.objects.filter(pk__in=ids, status__in=_REVOCABLE)
        .order_by("pk")
        .values_list("pk", "status", "identity_id", "entitlement_id")
    )
    never_provisioned = [pk for pk, status, *_ in found if status == GrantStatus.PROVISION_FAILED]
    revoking = [pk for pk, status, *_ in found if status != GrantStatus.PROVISION_FAILED]
    now = clock.database_now()
    common = {"end_reason": end_reason, "revoked_by_id": user_id, "updated_at": now}
    Grant.objects.filter(pk__in=never_provisioned).update(status=GrantStatus.REVOKED, revoked_at=now, **common)
    Grant.objects.filter(pk__in=revoking).update(status=GrantStatus.REVOKING, **common)
    Grant.history.bulk_history_create(
        list(Grant.objects.filter(pk__in=[row[0] for row in found])),
        update=True,
        default_change_reason=note[:100],
        default_user=get_user_model().objects.filter(pk=user_id).first() if user_id else None,
    )
    revoked = set(never_provisioned)
    return [
        (pk, GrantStatus.REVOKED if pk in revoked else GrantStatus.REVOKING, identity_id, entitlement_id)
        for pk, _status, identity_id, entitlement_id in found
    ]


def grants_revoke_many(*, grant_ids: Iterable[int], actor: ActorLike, reason: str, end_reason: str) -> list[int]:
    """Revoke many grants at once; see `_revoke_many`. The ids are read once, before the transaction,
    so that a run again after a deadlock revokes the same grants (a generator would be spent)."""
    return _revoke_many(grant_ids=sorted(set(grant_ids)), actor=actor, reason=reason, end_reason=end_reason)


@state_change
def _revoke_many(*, grant_ids: list[int], actor: ActorLike, reason: str, end_reason: str) -> list[int]:
    """Revoke many grants at once (retirement, offboarding, certification remediation): set-based.

    What `grant_revoke` does for one grant, per batch of a thousand: one UPDATE ... RETURNING under
    the grants' row locks (taken in id order), their history rows, one outbox row per grant for its
    connector, and their audit events, written with the service's batch at commit. Callers have
    authorised it. Grants already being removed or ended are left alone, so it is safe to ask twice.
    Returns the ids it changed.
    """
    user = acting_user(actor)
    user_id = user.pk if getattr(user, "is_authenticated", False) else None
    token = uuid.uuid4().hex[:12]  # this revocation's ask, told from any earlier one
    revoke_batch = _revoke_batch_pg if connection.vendor == "postgresql" else _revoke_batch_orm
    changed: list[int] = []
    for start in range(0, len(grant_ids), _REVOKE_BATCH):
        batch = grant_ids[start : start + _REVOKE_BATCH]
        rows = revoke_batch(batch, user_id=user_id, note=reason, end_reason=end_reason)
        enqueue_revokes(
            [pk for pk, status, *_ in rows if status == GrantStatus.REVOKING], ask=f"revoke:{end_reason}", attempt=token
        )
        audit_events_record_many(
            actor=actor,
            events=[
                EventSpec(
                    AuditAction.GRANT_REVOKED if status == GrantStatus.REVOKED else AuditAction.GRANT_REVOKE_REQUESTED,
                    Target("governance.grant", str(pk), f"Grant #{pk}"),
                    {
                        "reason": reason,
                        "end_reason": end_reason,
                        "identity": identity_id,
                        "entitlement": entitlement_id,
                    },
                )
                for pk, status, identity_id, entitlement_id in rows
            ],
        )
        changed.extend(row[0] for row in rows)
        findings_recheck_on_commit({row[2] for row in rows})
    return changed


@state_change
def grant_confirm_revoked(*, grant_id: int, actor: ActorLike, confirmation: str = "") -> Grant:
    """The target confirmed the removal: the grant has expired or been revoked, for good.

    `confirmation` is what the connector saw the target do, kept on the audit event.
    """
    grant = lock(Grant, grant_id)
    check(actor, policies.can_confirm_provisioning, grant, "Only the system's owner may confirm the removal.")
    if grant.status in (GrantStatus.REVOKED, GrantStatus.EXPIRED):
        return grant
    if grant.status not in (GrantStatus.REVOKING, GrantStatus.REVOKE_FAILED):
        raise InvalidTransition(f"Grant #{grant.pk} is {grant.get_status_display().lower()}; nothing to confirm.")
    expired = grant.end_reason == END_EXPIRED
    grant.status = GrantStatus.EXPIRED if expired else GrantStatus.REVOKED
    grant.revoked_at, grant.last_error = clock.database_now(), ""
    grant.save(update_fields=["status", "revoked_at", "last_error", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_EXPIRED if expired else AuditAction.GRANT_REVOKED,
        target=grant,
        data={"end_reason": grant.end_reason, **({"confirmation": confirmation} if confirmation else {})},
    )
    if grant.end_reason != "released":  # the holder gave it back and needs no telling
        ended = "expired" if expired else f"was removed ({grant.end_reason or 'revoked'})"
        _tell_holders(
            grant,
            kind="grant.expired" if expired else "grant.revoked",
            subject=f"{grant.entitlement.name} on {grant.entitlement.system.name} for {grant.identity.name} {ended}",
            body="Request it again from the catalogue if it is still needed.",
            key=f"grant:{grant.pk}:ended",
        )
    return grant


def grants_confirm_revoked_many(*, confirmations: dict[int, str]) -> dict[int, str]:
    """`grant_confirm_revoked` for many grants at once, by the system (the outbox's batched revocations).

    The same rules, set-based: the grants are locked in id order; those removed already change
    nothing; those not being removed are refused (an error for that grant, nothing changed); the rest
    become expired or revoked at the database's time, with their history rows, one audit event each
    carrying the connector's confirmation, and their holders told (but not for "released").
    `confirmations` maps each grant to what its target was seen to do. Returns the refused grants'
    errors, by id. Joins the caller's transaction (the outbox's outcome record), else opens its own.
    """
    return _confirm_revoked_many(confirmations=confirmations) if confirmations else {}


@state_change
def _confirm_revoked_many(*, confirmations: dict[int, str]) -> dict[int, str]:
    rows = list(
        Grant.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(confirmations))
        .order_by("pk")
        .values_list("pk", "status", "end_reason", "identity_id", "entitlement_id")
    )
    errors = {pk: f"Grant {pk} does not exist." for pk in set(confirmations) - {row[0] for row in rows}}
    ending = []
    for pk, status, end_reason, identity_id, entitlement_id in rows:
        if status in (GrantStatus.REVOKED, GrantStatus.EXPIRED):
            continue
        if status not in (GrantStatus.REVOKING, GrantStatus.REVOKE_FAILED):
            errors[pk] = f"Grant #{pk} is {GrantStatus(status).label.lower()}; nothing to confirm."
            continue
        ending.append((pk, end_reason, identity_id, entitlement_id))
    if not ending:
        return errors
    now = clock.database_now()
    ended = {"revoked_at": now, "last_error": "", "updated_at": now}
    expired = [pk for pk, end_reason, *_ in ending if end_reason == END_EXPIRED]
    revoked = [pk for pk, end_reason, *_ in ending if end_reason != END_EXPIRED]
    if expired:
        Grant.objects.filter(pk__in=expired).update(status=GrantStatus.EXPIRED, **ended)
    if revoked:
        Grant.objects.filter(pk__in=revoked).update(status=GrantStatus.REVOKED, **ended)
    _history_record([row[0] for row in ending], now=now)
    audit_events_record_many(
        actor=Actor.system(),
        events=[
            EventSpec(
                AuditAction.GRANT_EXPIRED if end_reason == END_EXPIRED else AuditAction.GRANT_REVOKED,
                Target("governance.grant", str(pk), f"Grant #{pk}"),
                {"end_reason": end_reason, **({"confirmation": confirmations[pk]} if confirmations[pk] else {})},
            )
            for pk, end_reason, _identity_id, _entitlement_id in ending
        ],
    )
    _tell_holders_ended([row for row in ending if row[1] != "released"])  # who gave it back needs no telling
    return errors


def _tell_holders_ended(ended: list[tuple[int, str, int, int]]) -> None:
    """What `grant_confirm_revoked` tells each holder, for many grants: one query when nobody has a login."""
    if not ended:
        return
    holders = {
        identity.pk: identity
        for identity in Identity.objects.filter(pk__in={row[2] for row in ended})
        .filter(
            Q(kind=IdentityKind.HUMAN, user__isnull=False)
            | (~Q(kind=IdentityKind.HUMAN) & (Q(owner__user__isnull=False) | Q(backup_owner__user__isnull=False)))
        )
        .select_related("user", "owner__user", "backup_owner__user")
    }
    told = [row for row in ended if row[2] in holders]
    if not told:
        return
    entitlements = (
        Entitlement.objects.select_related("system").only("name", "system__name").in_bulk({row[3] for row in told})
    )
    notices = []
    for pk, end_reason, identity_id, entitlement_id in told:
        expired, identity, entitlement = end_reason == END_EXPIRED, holders[identity_id], entitlements[entitlement_id]
        ended_how = "expired" if expired else f"was removed ({end_reason or 'revoked'})"
        notices.append(
            Notice(
                recipients=holders_of(identity),
                kind="grant.expired" if expired else "grant.revoked",
                subject=f"{entitlement.name} on {entitlement.system.name} for {identity.name} {ended_how}",
                body="Request it again from the catalogue if it is still needed.",
                link=reverse("governance:grant_detail", args=[pk]),
                key=f"grant:{pk}:ended",
            )
        )
    notify_many(notices)


def _history_record(ids: list[int], *, now: datetime, note: str | None = None) -> None:
    """The grants' rows as they now are, into their history, set-based (what a save records one by one)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_history_insert_sql(), [now, note, None, ids])
        return
    Grant.history.bulk_history_create(
        list(Grant.objects.filter(pk__in=ids)), update=True, default_change_reason=note, default_date=now
    )


@state_change
def grant_revoke_failed(*, grant_id: int, actor: ActorLike, error: str) -> Grant:
    """The target refused the removal: stays visible as failed and is asked again later, never marked done."""
    grant = lock(Grant, grant_id)
    if grant.status != GrantStatus.REVOKING:
        return grant
    grant.status, grant.last_error = GrantStatus.REVOKE_FAILED, error[:2000]
    grant.save(update_fields=["status", "last_error", "updated_at"])
    audit_event_record(actor=actor, action=AuditAction.GRANT_REVOKE_FAILED, target=grant, data={"error": error[:500]})
    _tell_system_owner(grant, "could not be removed", error)
    return grant


# What a retry moves a failed grant back to, the event it records, and what it asks the connector.
_RETRIES = {
    GrantStatus.PROVISION_FAILED: (GrantStatus.PENDING_PROVISION, AuditAction.GRANT_PROVISION_RETRIED, PROVISION),
    GrantStatus.REVOKE_FAILED: (GrantStatus.REVOKING, AuditAction.GRANT_REVOKE_REQUESTED, REVOKE),
}


def _retry(grant_id: int, actor: ActorLike, failed: str, what: str) -> Grant:
    grant = lock(Grant, grant_id)
    check(actor, policies.can_confirm_provisioning, grant, f"Only the system's owner may retry the {what}.")
    if grant.status != failed:
        raise InvalidTransition(f"Grant #{grant.pk} is not a failed {what}.")
    grant.status, action, kind = _RETRIES[failed]
    grant.save(update_fields=["status", "updated_at"])
    audit_event_record(actor=actor, action=action, target=grant, data={"retry": True})
    _ask_connector(grant, kind)
    return grant


@state_change
def grant_retry_provision(*, grant_id: int, actor: ActorLike) -> Grant:
    """Ask the connector again after it gave up provisioning."""
    return _retry(grant_id, actor, GrantStatus.PROVISION_FAILED, "provisioning")


@state_change
def grant_retry_revoke(*, grant_id: int, actor: ActorLike) -> Grant:
    """Ask the connector again after it gave up removing the access."""
    return _retry(grant_id, actor, GrantStatus.REVOKE_FAILED, "removal")


_PG_RETRY_DUE = """
    WITH due AS (
        SELECT id FROM governance_grant
        WHERE status = 'revoke_failed' AND updated_at <= %(cutoff)s
        ORDER BY updated_at, id LIMIT %(limit)s
        FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE governance_grant AS g SET status = 'revoking', updated_at = %(now)s
    FROM due WHERE g.id = due.id
    RETURNING g.id, g.identity_id, g.entitlement_id
"""


@state_change
def grants_retry_failed_revocations(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Ask the target again to remove each access whose removal failed REVOKE_FAILED_RETRY_MINUTES ago or more.

    Access nobody managed to remove is access still held: the sweep keeps asking until the target
    confirms (or someone confirms by hand). What `grant_retry_revoke` does for one grant, set-based in
    one short transaction: one UPDATE ... RETURNING moves the due grants back to `revoking` (a grant
    locked by someone else, being confirmed or retried by hand, is skipped until the next sweep), their
    history rows, one audit event each, and one outbox message each, keyed as `_ask_connector` keys it.
    Which grants are due, and the stamp on those moved, come from the database's clock, like every
    other sweep's decision (the failure's own `updated_at` may be a node's auto_now: minutes of
    threshold dwarf any skew).
    """
    now = now or clock.database_now()
    cutoff = now - timedelta(minutes=settings.REVOKE_FAILED_RETRY_MINUTES)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PG_RETRY_DUE, {"cutoff": cutoff, "now": now, "limit": limit})
            rows = sorted(cursor.fetchall())
    else:  # the embedded database: one writer at a time, no row locks to take
        rows = list(
            Grant.objects.filter(status=GrantStatus.REVOKE_FAILED, updated_at__lte=cutoff)
            .order_by("updated_at", "pk")
            .values_list("pk", "identity_id", "entitlement_id")[:limit]
        )
        Grant.objects.filter(pk__in=[row[0] for row in rows]).update(status=GrantStatus.REVOKING, updated_at=now)
        rows.sort()
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    _history_record(ids, now=now)
    audit_events_record_many(
        actor=Actor.system(),
        events=[
            EventSpec(
                AuditAction.GRANT_REVOKE_REQUESTED, Target("governance.grant", str(pk), f"Grant #{pk}"), {"retry": True}
            )
            for pk, _identity_id, _entitlement_id in rows
        ],
    )
    asks = dict(Grant.history.filter(id__in=ids).values("id").annotate(n=Count("*")).values_list("id", "n"))
    enqueue_many(
        [
            OutboxMessage(kind=REVOKE, payload={"grant_id": pk}, idempotency_key=connector_key(pk, REVOKE, asks[pk]))
            for pk in ids
        ]
    )
    return len(rows)


@state_change
def grant_renew(*, grant_id: int, actor: ActorLike, duration: timedelta, reason: str = "") -> Grant:
    """Replace an active time-boxed grant by its renewal, without touching the target.

    The access continues, so no connector call: the old grant ends as expired ("renewed") and the
    new one, linked by `renewal_of`, is active at once until the old expiry plus `duration`
    (capped at the entitlement's maximum from now).
    """
    old = lock(Grant, grant_id)
    now = clock.database_now()
    if not old.is_in_force(now):
        raise InvalidTransition(f"Grant #{old.pk} is no longer active; request the access anew.")
    if old.no_renew:
        raise InvalidTransition(f"Grant #{old.pk} was reviewed and marked do-not-renew.")
    if old.kind == GrantKind.BREAK_GLASS:
        # Its end is the hard cap fixed at activation: more time is a new activation and a new review.
        raise InvalidTransition("Break-glass access cannot be extended or renewed: activate again.")
    holder = Identity.objects.only("status", "name").get(pk=old.identity_id)
    if holder.status != IdentityStatus.ACTIVE:
        raise ValidationFailed(f"{holder} is {holder.get_status_display().lower()}; its access cannot be extended.")
    old.status, old.end_reason, old.revoked_at = GrantStatus.EXPIRED, "renewed", now
    old.save(update_fields=["status", "end_reason", "revoked_at", "updated_at"])
    new = Grant.objects.create(
        identity_id=old.identity_id,
        entitlement_id=old.entitlement_id,
        kind=old.kind,
        status=GrantStatus.ACTIVE,
        granted_at=now,
        # Never past one grant's maximum from now, however the extension was approved.
        expires_at=min(max(old.expires_at or now, now) + duration, now + old.entitlement.effective_max_duration),
        approved_duration=duration,
        reason=reason,
        renewal_of=old,
        connector_reference=old.connector_reference,
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_RENEWED,
        target=new,
        data=_grant_data(new, renews=old.pk, previous_expires_at=old.expires_at, reason=reason),
    )
    _ask_connector(new, EXTEND)  # a target that keeps its own end (postgresql's VALID UNTIL) follows the new one
    return new


def _refuse_blocked_combination(identity: Identity, entitlement: Entitlement, held: set[int]) -> None:
    """The last word on blocking SoD rules, under the identity's lock, whatever path issues the grant.

    The policy warns earlier, but two requests in flight at once, or a direct grant, meet here.
    """
    rules = SodRule.objects.filter(is_active=True, action=SodAction.BLOCK, entitlements=entitlement)
    for rule in rules.prefetch_related("entitlements"):
        others = {e.pk for e in rule.entitlements.all()} - {entitlement.pk}
        if others and others <= held:
            raise InvalidTransition(
                f"Separation of duties ({rule.name}): {identity} may not hold {entitlement} with what it holds already."
            )


def time_left(grant: Grant, now: datetime | None = None) -> timedelta | None:
    if grant.expires_at is None:
        return None
    return max(grant.expires_at - (now or clock.now()), timedelta(0))
