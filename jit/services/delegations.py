"""Delegations: recorded consent that a machine may ask for access on someone's behalf, and the chain
an agent declares when it does.

An agent names its chain as delegation ids, from the initiator's delegation to the one naming the
agent. `delegation_chain_verify` checks every hop against the records, never against what the
caller says about them: each exists, is neither revoked nor expired, hands on to the next, was given
by an active identity, may be passed on when it is, and covers what is asked. Submission
(`services.requests.access_request_submit`) then evaluates the policy for the initiator as well, so
a chain never obtains what its initiator could not.

Lock order: a delegation row is held FOR SHARE while a submission verifies it (its revocation waits
for the submission, and the other way round); revocation locks that one row and nothing else, and
creation locks the two identities (pk order) before inserting, so neither waits on anything a
submission holds in the documented order (governance.locks).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q

from audit.choices import AuditAction
from audit.kernel import clock
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.services import ActorLike, acting_user, audit_event_record, state_change
from governance.choices import IdentityKind, IdentityStatus, RiskTier
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.locks import lock, lock_ids, lock_many, share_ids
from governance.models import Entitlement, Identity

from .. import policies
from ..models import AccessRequest, Delegation
from ..policy import human_duration

DELEGATE_KINDS = (IdentityKind.SERVICE_ACCOUNT, IdentityKind.WORKLOAD, IdentityKind.AI_AGENT)
DEFAULT_DAYS = 7  # when no expiry is given: long enough for a task, short of the maximum
FIELD = "delegation_chain"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _end(identity: Identity) -> dict:
    return {"id": identity.pk, "name": identity.name, "kind": identity.kind}


def _data(delegation: Delegation, entitlement_ids: list[int], **extra) -> dict:
    """Both ends, the scope and the expiry: what the trail says of a delegation."""
    return {
        "delegator": _end(delegation.delegator),
        "delegate": _end(delegation.delegate),
        "entitlements": sorted(entitlement_ids),
        "max_risk_tier": delegation.max_risk_tier,
        "may_redelegate": delegation.may_redelegate,
        "purpose": delegation.purpose,
        "expires_at": delegation.expires_at,
        **extra,
    }


def _field_error(field: str, message: str, code: str = "") -> ValidationFailed:
    return ValidationFailed(message, field_errors={field: [message]}, code=code)


#
# Create and revoke
#
@state_change
def delegation_create(
    *,
    actor: ActorLike,
    delegator_id: int,
    delegate_id: int,
    purpose: str,
    expires_at: datetime | None = None,
    entitlement_ids: list[int] | tuple[int, ...] = (),
    max_risk_tier: str = RiskTier.MEDIUM,
    may_redelegate: bool = False,
) -> Delegation:
    """Let a machine act for the delegator, within a scope and until an expiry.

    The delegator itself (a person signed in, a machine through its token), a machine delegator's
    owners or an admin delegate; both ends must be active, and the delegate a service account,
    workload or agent. A delegation runs at most DELEGATION_MAX_DAYS (by default DEFAULT_DAYS).
    """
    if delegator_id == delegate_id:
        raise _field_error("delegate", "Choose someone else to act for you: nobody needs a delegation from themself.")
    # Both identities, in pk order: an offboarding or a suspension racing this one waits or is waited for.
    found = {identity.pk: identity for identity in lock_many(Identity.objects.all(), [delegator_id, delegate_id])}
    delegator, delegate = found.get(delegator_id), found.get(delegate_id)
    if delegator is None:
        raise _field_error("delegator", f"Identity {delegator_id} does not exist.")
    policies.require(
        policies.may_delegate_for(actor, delegator),
        "You may delegate only for yourself or for a machine you own (admins: for anyone).",
    )
    if delegator.status != IdentityStatus.ACTIVE:
        raise _field_error(
            "delegator", f"{delegator} is {delegator.get_status_display().lower()}: it delegates nothing."
        )
    if delegate is None:
        raise _field_error("delegate", f"Identity {delegate_id} does not exist.")
    if delegate.kind not in DELEGATE_KINDS:
        raise _field_error("delegate", "Only a service account, a workload or an agent can act on someone's behalf.")
    if delegate.status != IdentityStatus.ACTIVE:
        raise _field_error(
            "delegate", f"{delegate} is {delegate.get_status_display().lower()}: it cannot act for anyone."
        )
    if max_risk_tier not in RiskTier.values:
        raise _field_error("max_risk_tier", f"Choose a risk tier: {', '.join(RiskTier.values)}.")
    purpose = (purpose or "").strip()
    if not purpose:
        raise _field_error("purpose", "Say what the delegate may act for you on.")
    if len(purpose) > FREE_TEXT_MAX_LENGTH:
        raise _field_error("purpose", f"At most {FREE_TEXT_MAX_LENGTH} characters.")
    now = clock.database_now()
    longest = timedelta(days=settings.DELEGATION_MAX_DAYS)
    if expires_at is None:
        expires_at = now + min(timedelta(days=DEFAULT_DAYS), longest)
    if expires_at <= now:
        raise _field_error("expires_at", "The expiry must be in the future.")
    if expires_at > now + longest:
        raise _field_error("expires_at", f"A delegation runs at most {settings.DELEGATION_MAX_DAYS} days.")
    wanted = sorted(set(entitlement_ids or ()))
    entitlements = list(Entitlement.objects.filter(pk__in=wanted))
    if len(entitlements) != len(wanted):
        unknown = sorted(set(wanted) - {e.pk for e in entitlements})
        raise _field_error("entitlements", f"Unknown entitlements: {', '.join(map(str, unknown))}.")
    user = acting_user(actor)
    delegation = Delegation.objects.create(
        delegator=delegator,
        delegate=delegate,
        max_risk_tier=max_risk_tier,
        may_redelegate=may_redelegate,
        purpose=purpose,
        expires_at=expires_at,
        created_at=now,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        created_by_identity=policies.machine_of(actor),
    )
    delegation.entitlements.set(entitlements)
    audit_event_record(
        actor=actor, action=AuditAction.DELEGATION_CREATED, target=delegation, data=_data(delegation, wanted)
    )
    return delegation


@state_change
def delegation_revoke(*, actor: ActorLike, delegation_id: int, reason: str = "") -> Delegation:
    """Take a delegation back (the delegator, its owners, an admin) or decline it (the delegate's side).

    From now on no chain through it verifies, and the requests made through it that are still in
    flight (pending, or approved and not started) are closed: the consent they stood on is gone. A
    grant already issued runs to its own expiry (never past the chain's, see `require_within`). A
    second revocation is a conflict, not a second event.
    """
    delegation = lock(Delegation, delegation_id)
    if not policies.may_revoke_delegation(actor, delegation):
        raise PermissionRefused(
            "Only its delegator, their owners or an admin revoke a delegation; its delegate declines it."
        )
    if delegation.revoked_at is not None:
        raise InvalidTransition(f"Delegation #{delegation.pk} was already revoked at {_when(delegation.revoked_at)}.")
    if len(reason or "") > FREE_TEXT_MAX_LENGTH:
        raise _field_error("reason", f"At most {FREE_TEXT_MAX_LENGTH} characters.")
    # Declined: the delegate's side said no, rather than the delegator taking it back.
    declined = not policies.may_delegate_for(actor, delegation.delegator)
    return _revoke_now(delegation, actor, reason=reason or "", declined=declined)


def _revoke_now(delegation: Delegation, actor: ActorLike, *, reason: str, declined: bool) -> Delegation:
    """End a locked delegation: revoked now, the requests made through it closed, audited."""
    delegation.revoked_at = clock.database_now()
    delegation.save(update_fields=["revoked_at"])
    closed = _close_requests_through(delegation, actor)
    audit_event_record(
        actor=actor,
        action=AuditAction.DELEGATION_REVOKED,
        target=delegation,
        data=_data(
            delegation,
            list(delegation.entitlements.values_list("pk", flat=True)),
            reason=reason,
            declined=declined,
            closed_requests=closed,
        ),
    )
    return delegation


def end_delegations_of_offboarded(identity: Identity, actor: ActorLike) -> list[int]:
    """An offboarding hook: a leaver neither acts for anyone nor lets anyone act for them, so the live
    delegations they gave or received end with them (each audited, requests through them closed)."""
    now = clock.database_now()
    live = Delegation.objects.filter(Q(delegator=identity) | Q(delegate=identity), revoked_at__isnull=True)
    ended = []
    for pk in live.filter(expires_at__gt=now).order_by("pk").values_list("pk", flat=True):
        delegation = lock(Delegation, pk)
        if delegation.revoked_at is None:
            _revoke_now(delegation, actor, reason=f"{identity.name} was offboarded", declined=False)
            ended.append(pk)
    return ended


def _close_requests_through(delegation: Delegation, actor: ActorLike) -> list[int]:
    """Close the in-flight requests whose recorded chain goes through this delegation, each audited.

    The few requests in flight with a chain are read and matched here (a JSON containment query is
    PostgreSQL's only); their beneficiaries are locked before them, the order a decision takes.
    """
    from .requests import _close_pending, _in_flight  # requests imports this module

    through = [
        (request.pk, request.beneficiary_id)
        for request in _in_flight(AccessRequest.objects.exclude(delegation_chain=[])).only(
            "pk", "beneficiary_id", "delegation_chain"
        )
        if any(isinstance(hop, dict) and hop.get("delegation") == delegation.pk for hop in request.delegation_chain)
    ]
    if not through:
        return []
    lock_ids(Identity, [beneficiary for _, beneficiary in through])
    closing = _in_flight(AccessRequest.objects.select_for_update(no_key=True)).filter(pk__in=[pk for pk, _ in through])
    return _close_pending(
        closing,
        actor=actor,
        note=f"Closed: delegation #{delegation.pk} it was made under was revoked",
        action=AuditAction.REQUEST_CLOSED_DELEGATION_REVOKED,
        data={"delegation": delegation.pk},
    )


#
# The chain an agent declares
#
@dataclass(frozen=True)
class VerifiedChain:
    """Delegations that were checked, from the initiator's to the one naming the caller."""

    hops: tuple[Delegation, ...]
    caller: Identity

    @property
    def initiator(self) -> Identity:
        return self.hops[0].delegator

    @property
    def identity_ids(self) -> frozenset[int]:
        """Everyone the caller may ask for through this chain: each hop authorised the next to act for it."""
        return frozenset(hop.delegator_id for hop in self.hops) | {self.caller.pk}

    @property
    def expires_at(self) -> datetime:
        return min(hop.expires_at for hop in self.hops)

    def as_data(self) -> list[dict]:
        """What the request keeps and the trail records: each hop with both ends and its expiry."""
        return [
            {
                "delegation": hop.pk,
                "from": _end(hop.delegator),
                "to": _end(hop.delegate),
                "expires_at": hop.expires_at.astimezone(UTC).isoformat(),
            }
            for hop in self.hops
        ]

    def require_scope(self, entitlement: Entitlement) -> None:
        """Every hop covers the entitlement: its list, when it names one, and its risk ceiling."""
        for hop in self.hops:
            words = f"The delegation from {hop.delegator.name} to {hop.delegate.name}"
            covered = [e.pk for e in hop.entitlements.all()]
            if covered and entitlement.pk not in covered:
                raise _field_error(FIELD, f"{words} does not cover {entitlement.name}.", "delegation_out_of_scope")
            if RiskTier.rank(entitlement.risk_tier) > RiskTier.rank(hop.max_risk_tier):
                raise _field_error(
                    FIELD,
                    f"{words} covers up to {hop.max_risk_tier} risk; {entitlement.name} is {entitlement.risk_tier} risk.",
                    "delegation_out_of_scope",
                )

    def require_within(self, start: datetime, duration: timedelta) -> None:
        """The access may not outrun the chain: it ends with its earliest delegation."""
        if start + duration > self.expires_at:
            left = max(self.expires_at - start, timedelta(0))
            message = (
                f"The delegation chain ends at {_when(self.expires_at)}, {human_duration(left)} from the start: "
                f"ask for at most {human_duration(left)}."
            )
            raise ValidationFailed(
                message, field_errors={FIELD: [message], "duration": [message]}, code="delegation_expires_first"
            )


def delegation_chain_verify(
    *, chain: list[int], caller: Identity, entitlement: Entitlement | None = None, now: datetime | None = None
) -> VerifiedChain:
    """Check a declared chain hop by hop against the recorded delegations; refuse at the first fault.

    Links are followed back from the caller first: a hop is described only once it is known to lead
    to the caller, so the answer says nothing about delegations that are none of the caller's
    business. Then each hop, from the initiator's: not revoked, not expired, its delegator active,
    passed on only where the hop before allows it; and, given an entitlement, within every scope.
    Each refusal names the hop and carries a code (delegation_unknown, delegation_broken, ...).
    """
    ids = [int(pk) for pk in chain]
    deepest = settings.DELEGATION_MAX_DEPTH
    if not ids:
        raise _field_error(FIELD, "Name at least one delegation.", "delegation_broken")
    if len(ids) > deepest:
        raise _field_error(
            FIELD, f"A delegation chain has at most {deepest} hops; this one has {len(ids)}.", "delegation_too_deep"
        )
    if len(set(ids)) != len(ids):
        twice = next(pk for pk in ids if ids.count(pk) > 1)
        raise _field_error(FIELD, f"The chain names delegation #{twice} twice.", "delegation_broken")
    now = now or clock.database_now()
    share_ids(Delegation, ids)  # a revocation racing this submission waits for it, or it for the revocation
    found = {
        d.pk: d
        for d in Delegation.objects.filter(pk__in=ids)
        .select_related("delegator", "delegate")
        .prefetch_related("entitlements")
    }
    expected = caller
    for position in reversed(range(len(ids))):
        hop, pk = position + 1, ids[position]
        delegation = found.get(pk)
        if delegation is None:
            raise _field_error(FIELD, f"Delegation #{pk} (hop {hop}) does not exist.", "delegation_unknown")
        if delegation.delegate_id != expected.pk:
            if position == len(ids) - 1:
                message = f"Delegation #{pk}, the last of the chain, is not to you ({caller.name}): the chain must end with you."
            else:
                message = f"Delegation #{pk} (hop {hop}) is not to {expected.name}, who delegated next (hop {hop + 1})."
            raise _field_error(FIELD, message, "delegation_broken")
        expected = delegation.delegator
    hops = tuple(found[pk] for pk in ids)
    for position, delegation in enumerate(hops):
        words = f"The delegation from {delegation.delegator.name} to {delegation.delegate.name}"
        if delegation.revoked_at is not None:
            raise _field_error(FIELD, f"{words} was revoked at {_when(delegation.revoked_at)}.", "delegation_revoked")
        if delegation.expires_at <= now:
            raise _field_error(FIELD, f"{words} expired at {_when(delegation.expires_at)}.", "delegation_expired")
        delegator = delegation.delegator
        if delegator.status != IdentityStatus.ACTIVE:
            status = delegator.get_status_display().lower()
            if position == 0:
                raise _field_error(
                    FIELD,
                    f"The initiator {delegator.name} is {status}: nothing is asked on their behalf.",
                    "initiator_inactive",
                )
            raise _field_error(
                FIELD, f"{delegator.name}, who delegated at hop {position + 1}, is {status}.", "delegator_inactive"
            )
        if delegation.delegate.kind not in DELEGATE_KINDS:
            raise _field_error(FIELD, f"{words}: {delegation.delegate.name} is not a machine.", "delegation_broken")
        if position > 0 and not hops[position - 1].may_redelegate:
            before = hops[position - 1]
            raise _field_error(
                FIELD,
                f"The delegation from {before.delegator.name} to {before.delegate.name} does not let "
                f"{before.delegate.name} delegate further (to {delegation.delegate.name}).",
                "redelegation_not_allowed",
            )
    verified = VerifiedChain(hops=hops, caller=caller)
    if entitlement is not None:
        verified.require_scope(entitlement)
    return verified
