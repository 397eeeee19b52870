"""Submitting, cancelling and fulfilling access requests."""

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, ActorLike, audit_event_record, state_change
from governance import policies as inventory
from governance.choices import FindingStatus, GrantKind, GrantStatus, IdentityStatus, RiskTier
from governance.errors import DomainError, InvalidTransition, PermissionRefused, ValidationFailed
from governance.locks import hold_entitlement, lock_ids, lock_many, share_entitlement
from governance.models import Entitlement, Finding, Grant, Identity, Notification, SodRule
from governance.services.grants import grant_issue, grant_renew
from governance.services.notifications import holders_of, notify

from .. import policies
from ..choices import RequestStatus, StageStatus
from ..models import AccessRequest, Approval, ApprovalStage
from ..policy import AutoApprovalFacts, PolicyDecision, PolicyInput, SodRuleFacts, evaluate
from . import callbacks
from .delegations import VerifiedChain, delegation_chain_verify
from .routing import short_stages, stage_approvers


@dataclass(frozen=True)
class Requester:
    """Who submits: a signed-in person, or a machine identity through the API (maybe on a user's token)."""

    user: object | None = None
    identity: Identity | None = None

    @classmethod
    def of(cls, actor: ActorLike) -> "Requester":
        if isinstance(actor, Actor):
            return cls(user=actor.user, identity=actor.identity or inventory.identity_of(actor.user))
        return cls(user=actor, identity=inventory.identity_of(actor))

    @property
    def actor(self) -> Actor:
        machine = self.identity if self.identity is not None and self.identity.kind != "human" else None
        return Actor(user=self.user, identity=machine)


BREAK_GLASS_NO_EXTENSION = (
    "Break-glass access cannot be extended or renewed: activate again (a new activation and a new review)."
)


def request_url(request: AccessRequest) -> str:
    return reverse("jit:request_detail", args=[request.pk])


def _what(request: AccessRequest) -> str:
    """The entitlement and its system, as a notice names them: "db-write on Payments DB"."""
    return f"{request.entitlement.name} on {request.entitlement.system.name}"


#
# Policy facts
#
def _renewal_facts(grant: Grant | None, now: datetime) -> tuple[int, timedelta]:
    """Renewals of this access within the window, and how long the chain has been held in all."""
    renewals, cumulative, current = 0, timedelta(0), grant
    while current is not None:
        if current.granted_at:
            # A renewed grant ended when its renewal replaced it, not at its old expiry.
            end = min(current.revoked_at or current.expires_at or now, current.expires_at or now, now)
            cumulative += max(end - current.granted_at, timedelta(0))
            if current.renewal_of_id and current.granted_at >= now - settings.JIT_RENEWAL_WINDOW:
                renewals += 1
        current = current.renewal_of
    return renewals, cumulative


def _in_flight(requests, now=None):
    """Requests still on their way to a grant: pending, or approved with no grant issued yet.

    An approved request whose activation window has passed is on its way nowhere (the chaser
    closes it); until then it must not block asking again. `now`: the database's clock as the
    caller read it (or a prepared query's slot for it); by default read here.
    """
    now = clock.database_now() if now is None else now
    waiting = Q(status=RequestStatus.APPROVED, grant__isnull=True) & (
        Q(activation_deadline__isnull=True) | Q(activation_deadline__gt=now)
    )
    return requests.filter(Q(status=RequestStatus.PENDING) | waiting)


def _auto_approval_facts(beneficiary: Identity, entitlement: Entitlement, now: datetime) -> AutoApprovalFacts:
    """The entitlement's automatic-approval conditions and the facts they read about this beneficiary.

    Read only when the entitlement's switch is on, so that requests for the rest cost no query more.
    """
    conditions = {
        "kinds": tuple(entitlement.auto_approve_kinds or ()),
        "max_risk": entitlement.auto_approve_max_risk,
        "max_finding_severity": entitlement.auto_approve_max_finding_severity,
        "max_minutes": entitlement.auto_approve_max_minutes,
        "intent_fields": tuple(entitlement.auto_approve_intent_fields or ()),
        "max_per_hour": entitlement.auto_approve_max_per_hour,
    }
    if not entitlement.auto_approve_machines:
        return AutoApprovalFacts(**conditions)
    severities = set(
        Finding.objects.filter(identity=beneficiary, status=FindingStatus.OPEN).values_list("severity", flat=True)
    )
    approved = AccessRequest.objects.filter(
        beneficiary=beneficiary,
        entitlement=entitlement,
        policy__auto_approve=True,
        decided_at__gt=now - timedelta(hours=1),
    )
    return AutoApprovalFacts(
        **conditions,
        beneficiary_owner_active=beneficiary.owner_id is not None
        and Identity.objects.filter(pk=beneficiary.owner_id, status=IdentityStatus.ACTIVE).exists(),
        open_finding_severity=max(severities, key=RiskTier.rank, default=""),
        approvals_last_hour=approved.count() if entitlement.auto_approve_max_per_hour else 0,
    )


def gather_policy_input(
    *,
    requester: Requester,
    beneficiary: Identity,
    entitlement: Entitlement,
    duration: timedelta | None,
    justification: str = "",
    ticket: str = "",
    intent: str = "",
    intent_task: str = "",
    intent_action: str = "",
    intent_resource: str = "",
    start_at: datetime | None = None,
    renewal_of: Grant | None = None,
    now: datetime | None = None,
    has_delegation_chain: bool = False,
    acting_for: frozenset[int] = frozenset(),
) -> PolicyInput:
    """The facts the policy decides on. `acting_for`: the identities a verified delegation chain lets
    the requester ask for (jit.services.delegations), as if it answered for them."""
    now = now or clock.database_now()
    me = requester.identity
    held = set(Grant.objects.in_force(now).filter(identity=beneficiary).values_list("entitlement_id", flat=True)) | set(
        Grant.objects.filter(identity=beneficiary, status=GrantStatus.PENDING_PROVISION).values_list(
            "entitlement_id", flat=True
        )
    )
    # Requests in flight count as held for separation of duties: otherwise asking for both halves
    # of a blocked pair at once, or one while the other waits for activation, would pass.
    held |= set(
        _in_flight(AccessRequest.objects.filter(beneficiary=beneficiary)).values_list("entitlement_id", flat=True)
    )
    rules = [
        SodRuleFacts(r.pk, r.name, frozenset(e.pk for e in r.entitlements.all()), r.action, r.severity)
        for r in SodRule.objects.filter(is_active=True, entitlements=entitlement).prefetch_related("entitlements")
    ]
    renewals, cumulative = _renewal_facts(renewal_of, now) if renewal_of else (0, timedelta(0))
    risk = entitlement.risk_tier
    return PolicyInput(
        requester_is_beneficiary=me is not None and me.pk == beneficiary.pk,
        requester_owns_beneficiary=me is not None
        and (me.pk in (beneficiary.owner_id, beneficiary.backup_owner_id) or beneficiary.pk in acting_for),
        requester_is_machine=me is not None and me.kind != "human",
        requester_controls_entitlement=me is not None and me.pk in (entitlement.owner_id, entitlement.system.owner_id),
        beneficiary_kind=beneficiary.kind,
        beneficiary_status=beneficiary.status,
        beneficiary_may_self_request=beneficiary.may_self_request,
        entitlement_id=entitlement.pk,
        entitlement_live=entitlement.is_live and entitlement.system.status == "active",
        entitlement_requestable=entitlement.requestable,
        entitlement_owner_active=entitlement.owner.status == IdentityStatus.ACTIVE,
        risk_tier=risk,
        allowed_kinds=tuple(entitlement.allowed_identity_kinds or ()),
        stages=tuple(entitlement.approval_stages or ()),
        auto_approve_machines=entitlement.auto_approve_machines,
        justification_required=entitlement.justification_required,
        ticket_required=entitlement.ticket_required,
        max_duration=entitlement.effective_max_duration,
        default_duration=settings.DEFAULT_DURATION_BY_RISK[risk],
        duration=duration,
        justification=justification,
        ticket=ticket,
        intent=intent,
        intent_task=intent_task,
        intent_action=intent_action,
        intent_resource=intent_resource,
        start_at=start_at,
        now=now,
        has_delegation_chain=has_delegation_chain,
        renewal_time_left=max(renewal_of.expires_at - now, timedelta(0))
        if renewal_of and renewal_of.expires_at
        else timedelta(0),
        held_entitlement_ids=frozenset(held),
        sod_rules=tuple(rules),
        is_renewal=renewal_of is not None,
        renewal_of_break_glass=renewal_of is not None and renewal_of.kind == GrantKind.BREAK_GLASS,
        renewals_in_window=renewals,
        cumulative_active=cumulative,
        min_quorum=settings.JIT_MIN_QUORUM_BY_RISK.get(risk, 1),
        extra_stage_group=settings.JIT_EXTRA_STAGE_GROUP,
        max_start_ahead=settings.JIT_MAX_START_AHEAD,
        activation_window=settings.JIT_ACTIVATION_WINDOW_BY_RISK.get(risk),
        step_up_after_renewals=settings.JIT_RENEWAL_STEP_UP_AFTER,
        step_up_after_cumulative=settings.JIT_CUMULATIVE_STEP_UP_AFTER,
        auto_approval=_auto_approval_facts(beneficiary, entitlement, now),
    )


def access_request_preview(
    *,
    actor: ActorLike,
    beneficiary: Identity,
    entitlement: Entitlement,
    asked_with: frozenset[int] = frozenset(),
    **facts,
) -> tuple[PolicyDecision, list[list]]:
    """What would happen if this were submitted: the decision and each stage's approvers (read-only).

    `asked_with`: the other entitlements of the same submission, counted as held, since each of
    them is in flight once submitted (so a separation-of-duties pair asked together shows here).
    """
    requester = Requester.of(actor)
    policy_input = gather_policy_input(requester=requester, beneficiary=beneficiary, entitlement=entitlement, **facts)
    if asked_with:
        held = policy_input.held_entitlement_ids | (asked_with - {entitlement.pk})
        policy_input = replace(policy_input, held_entitlement_ids=held)
    decision = evaluate(policy_input)
    probe = AccessRequest(requester=requester.user, beneficiary=beneficiary, entitlement=entitlement)
    approvers = stage_approvers(decision.stages, probe)
    if decision.allowed and not decision.auto_approve:
        for position in short_stages(decision.stages, approvers):
            decision.allowed = False
            decision.reasons.append(_shortfall(position, decision.stages[position - 1]))
    return decision, approvers


def _beneficiary_for(requester: Requester, beneficiary_id: int, chain: VerifiedChain | None = None) -> Identity:
    """The beneficiary, locked, if the requester may ask for it at all; otherwise one refusal for all.

    Checked before anything about the beneficiary is said (what it holds, what it has pending), and
    an unknown id gets the same answer as someone else's, so the API is no oracle for either. With a
    verified delegation chain, anyone in it may be the beneficiary: each hop authorised the next.
    """
    me = requester.identity
    mine = Identity.objects.filter(pk=beneficiary_id)
    answered_for = Q(pk=me.pk) | Q(owner=me) | Q(backup_owner=me) if me is not None else None
    if answered_for is not None and chain is not None:
        answered_for |= Q(pk__in=chain.identity_ids)
    mine = mine.filter(answered_for) if answered_for is not None else mine.none()
    beneficiary = mine.select_for_update(no_key=True).first()
    if beneficiary is None:
        message = "You may request only for yourself or for an identity you own."
        if chain is not None:
            message = "You may request only for yourself, an identity you own, or one in your delegation chain."
        raise ValidationFailed(message, field_errors={"beneficiary": [message]})
    return beneficiary


def _verified_chain(requester: Requester, delegation_chain: list | None) -> VerifiedChain | None:
    """The declared chain, verified, or None when none is declared. Only a machine acts for someone:
    a person asks for themself or for what they own."""
    if not delegation_chain:
        return None
    me = requester.identity
    if requester.user is not None or me is None or me.kind == "human":
        message = "Only a machine identity acting for someone declares a delegation chain."
        raise ValidationFailed(message, field_errors={"delegation_chain": [message]}, code="delegation_not_for_people")
    return delegation_chain_verify(chain=delegation_chain, caller=me)


def _refuse_intent_for_people(requester: Requester, beneficiary: Identity, parts: dict[str, str]) -> None:
    """Task, action and resource describe a machine's work: a person asking for themself says why in words."""
    given = [name for name, value in parts.items() if value]
    if given and requester.user is not None and beneficiary.kind == "human":
        message = "Task, action and resource describe a machine identity's work; say why in the justification."
        raise ValidationFailed(message, field_errors={name: [message] for name in given}, code="intent_not_for_people")


def _initiator_refusal(chain: VerifiedChain, entitlement: Entitlement, **facts) -> str | None:
    """Why the chain's initiator could not obtain this entitlement for themself, or None.

    The policy is evaluated with the initiator as requester and beneficiary, for the same
    entitlement and duration, so a chain never obtains what its initiator could not (a
    separation-of-duties block, no requester role, a machine its owner keeps from asking). Which
    identity kinds may hold the entitlement is about the holder, so it is left out for the initiator.
    """
    initiator = chain.initiator
    user = initiator.user if initiator.kind == "human" else None
    if initiator.kind == "human":
        if user is None or not user.is_active:
            return "they have no active login to ask with."
        if not policies.may_request(user):
            return "they do not hold the requester role."
    facts = gather_policy_input(
        requester=Requester(user=user, identity=initiator), beneficiary=initiator, entitlement=entitlement, **facts
    )
    decision = evaluate(replace(facts, allowed_kinds=(*facts.allowed_kinds, initiator.kind)))
    return None if decision.allowed else decision.reasons[0]


def _already_held(grant: Grant, beneficiary: Identity, entitlement: Entitlement) -> str:
    if grant.is_in_force():
        return f"{beneficiary} already holds {entitlement.name}; extend that grant instead."
    if grant.status == GrantStatus.PENDING_PROVISION:
        return f"{entitlement.name} is already being granted to {beneficiary}; it starts when the system confirms."
    return (
        f"{beneficiary}'s previous {entitlement.name} access is still being removed from "
        f"{entitlement.system.name}; ask again once its removal is confirmed."
    )


def _shortfall(position: int, spec: dict) -> str:
    return (
        f"Nobody can approve stage {position} ({spec['approver'].replace('_', ' ')}) with the quorum it needs; "
        "ask an admin to fix the approval path."
    )


#
# Submission
#
@state_change
def access_request_submit(
    *,
    actor: ActorLike,
    beneficiary_id: int,
    entitlement_id: int,
    duration: timedelta | None = None,
    justification: str = "",
    ticket: str = "",
    intent: str = "",
    intent_task: str = "",
    intent_action: str = "",
    intent_resource: str = "",
    start_at: datetime | None = None,
    delegation_chain: list[int] | None = None,
    renewal_of_id: int | None = None,
    callback_url: str = "",
    together: dict | None = None,
) -> AccessRequest:
    """Ask for an entitlement; the policy refuses, routes to approvers, or approves at once.

    The beneficiary's row is locked so a request and an offboarding of the same identity never
    interleave. A machine acting for someone names its `delegation_chain` (delegation ids, from the
    initiator's to its own): verified hop by hop, it lets the machine ask for anyone in the chain,
    within every hop's scope and expiry, and only for what the initiator could obtain themself.
    With a `callback_url` the outcome is POSTed there, signed with the secret the returned request
    carries once (`callback_secret`).
    """
    requester = Requester.of(actor)
    callback_url = callbacks.callback_url_clean(callback_url) if callback_url else ""
    # A person asks only with the requester role: checked here, so the page, the API and any other
    # caller are held to it. A machine identity acting without a login holds no roles.
    policies.require(requester.user is None or policies.may_request(requester.user), policies.NOT_A_REQUESTER)
    if requester.identity is not None and requester.identity.status != IdentityStatus.ACTIVE:
        raise ValidationFailed("Your identity is not active; you cannot request access.")
    if requester.user is None and requester.identity is not None and not requester.identity.may_self_request:
        # A machine acting on its own asks only when its owner allowed it to (the identity's setting).
        raise PermissionRefused(f"{requester.identity}'s owner has not allowed it to request access itself.")
    chain = _verified_chain(requester, delegation_chain)
    beneficiary = _beneficiary_for(requester, beneficiary_id, chain)
    intent_parts = {"intent_task": intent_task, "intent_action": intent_action, "intent_resource": intent_resource}
    _refuse_intent_for_people(requester, beneficiary, intent_parts)
    # In the lock order (identity, system, entitlement, request, grant), shared: requests for one
    # entitlement go side by side; an edit or a retirement of it waits for them, and they for it.
    try:
        entitlement = hold_entitlement(entitlement_id, "owner", "system__owner")
    except ValidationFailed:
        raise ValidationFailed("Unknown entitlement.", field_errors={"entitlement": ["Unknown entitlement."]}) from None
    if chain is not None:
        chain.require_scope(entitlement)
    renewal_of = None
    if renewal_of_id is not None:
        renewal_of = lock_many(Grant.objects.all(), [renewal_of_id])
        renewal_of = renewal_of[0] if renewal_of else None
        if (
            renewal_of is None
            or renewal_of.identity_id != beneficiary.pk
            or renewal_of.entitlement_id != entitlement.pk
        ):
            raise ValidationFailed("That grant is not this identity's access to this entitlement.")
        if renewal_of.no_renew:
            raise InvalidTransition("This grant was reviewed and marked do-not-renew; it cannot be extended.")
        if renewal_of.kind == GrantKind.BREAK_GLASS:
            raise InvalidTransition(BREAK_GLASS_NO_EXTENSION, field_errors={"duration": [BREAK_GLASS_NO_EXTENSION]})
        if not renewal_of.is_in_force():
            raise InvalidTransition("This grant is no longer active; request the access anew.")
    elif live := Grant.objects.live().filter(identity=beneficiary, entitlement=entitlement).first():
        raise InvalidTransition(_already_held(live, beneficiary, entitlement))
    elif _in_flight(AccessRequest.objects.filter(beneficiary=beneficiary, entitlement=entitlement)).exists():
        raise InvalidTransition(
            f"A request for {entitlement.name} for {beneficiary} is already pending or approved and waiting to start."
        )
    decision = evaluate(
        gather_policy_input(
            requester=requester,
            beneficiary=beneficiary,
            entitlement=entitlement,
            duration=duration,
            justification=justification,
            ticket=ticket,
            intent=intent,
            **intent_parts,
            start_at=start_at,
            renewal_of=renewal_of,
            has_delegation_chain=bool(delegation_chain),
            acting_for=chain.identity_ids if chain is not None else frozenset(),
        )
    )
    if not decision.allowed:
        raise ValidationFailed(
            decision.reasons[0], field_errors=decision.field_errors, code="policy_refused", reasons=decision.reasons
        )
    if chain is not None:
        now = clock.database_now()
        chain.require_within(max(start_at or now, now), timedelta(seconds=decision.duration_seconds))
        refusal = _initiator_refusal(
            chain,
            entitlement,
            duration=timedelta(seconds=decision.duration_seconds),
            # The caller's paperwork passed above; the initiator is judged on what they could hold.
            justification=justification or intent,
            ticket=ticket,
            intent=intent,
            **intent_parts,
            start_at=start_at,
        )
        if refusal:
            message = f"The initiator {chain.initiator.name} could not obtain this: {refusal}"
            raise ValidationFailed(
                message, field_errors={"delegation_chain": [message]}, code="initiator_not_allowed", reasons=[message]
            )
    try:
        with transaction.atomic():
            request = AccessRequest.objects.create(
                requester=requester.user,
                requester_identity=requester.identity if requester.user is None else None,
                beneficiary=beneficiary,
                entitlement=entitlement,
                duration=timedelta(seconds=decision.duration_seconds),
                justification=justification,
                ticket=ticket,
                intent=intent,
                **intent_parts,
                start_at=start_at,
                delegation_chain=chain.as_data() if chain is not None else [],
                policy=decision.snapshot(),
                renewal_of=renewal_of,
            )
    except IntegrityError:
        raise InvalidTransition("A request for this entitlement is already pending for this identity.") from None
    first_approvers = _create_stages(request, decision)
    if callback_url:
        request.callback_secret = callbacks.request_callback_register(request, callback_url)
    audit_event_record(
        actor=requester.actor,
        action=AuditAction.REQUEST_SUBMITTED,
        target=request,
        data={
            "beneficiary": beneficiary.pk,
            "entitlement": entitlement.pk,
            "duration_seconds": decision.duration_seconds,
            "justification": justification,
            "ticket": ticket,
            "intent": intent,
            **intent_parts,
            "delegation_chain": request.delegation_chain,
            "callback_host": urlsplit(callback_url).hostname if callback_url else None,
            "start_at": start_at,
            "renewal_of": renewal_of_id,
            "stages": decision.stages,
            "sod_conflicts": decision.sod_conflicts,
            "auto_approve": decision.auto_approve,
            "step_up": decision.step_up,
            # Asked together with others (access_request_submit_many): the submission and its entitlements.
            **({"together": together} if together else {}),
        },
    )
    if decision.auto_approve:
        request.stages.update(status=StageStatus.APPROVED, decided_at=clock.database_now())
        _approve(request, actor=requester.actor, action=AuditAction.REQUEST_AUTO_APPROVED)
    else:
        notify_approvers(request, first_approvers)
    return request


# How many entitlements one submission may ask for together: a handful of related ones, not a role.
MAX_TOGETHER = 10


@state_change
def access_request_submit_many(
    *,
    actor: ActorLike,
    beneficiary_id: int,
    entitlement_ids: list[int],
    duration: timedelta | None = None,
    justification: str = "",
    ticket: str = "",
    start_at: datetime | None = None,
    **intent_parts: str,
) -> list[AccessRequest]:
    """Ask for several entitlements at once: one request, and so one decision, for each; all or none.

    One justification serves them all. Each is asked for `duration` cut to its own maximum. Every
    entitlement is tried (each in a savepoint) so that a refusal names all that would fail; then
    any refusal undoes the whole submission. They are taken in id order, the one lock order, so two
    submissions for one identity never deadlock. Each request's submitted event names the
    submission (`together`): the requests are linked in the trail they are judged by.
    """
    ids = sorted(set(entitlement_ids))
    if not ids:
        raise ValidationFailed("Choose at least one entitlement.", field_errors={"entitlements": ["Choose one."]})
    if len(ids) > MAX_TOGETHER:
        message = f"Ask for at most {MAX_TOGETHER} entitlements together."
        raise ValidationFailed(message, field_errors={"entitlements": [message]})
    maxima = dict(
        (e.pk, e.effective_max_duration)
        for e in Entitlement.objects.filter(pk__in=ids).only("max_duration", "risk_tier")
    )
    together = {"submission": uuid.uuid4().hex, "entitlements": ids}
    made: list[AccessRequest] = []
    refused: dict[int, DomainError] = {}
    for entitlement_id in ids:
        asked = duration if duration is None or entitlement_id not in maxima else min(duration, maxima[entitlement_id])
        try:
            made.append(
                access_request_submit(
                    actor=actor,
                    beneficiary_id=beneficiary_id,
                    entitlement_id=entitlement_id,
                    duration=asked,
                    justification=justification,
                    ticket=ticket,
                    start_at=start_at,
                    together=together,
                    **intent_parts,
                )
            )
        except DomainError as error:
            refused[entitlement_id] = error
    if refused:
        raise _refused_together(refused)
    return made


def _refused_together(refused: dict[int, DomainError]) -> ValidationFailed:
    """One refusal for the submission: each entitlement's reasons by name, fields' errors beside them."""
    names = dict(Entitlement.objects.filter(pk__in=refused).values_list("pk", "name"))
    lines: list[str] = []
    fields: dict[str, list[str]] = {}
    for entitlement_id, error in refused.items():
        name = names.get(entitlement_id, f"#{entitlement_id}")
        placed = False
        for field, messages in (error.field_errors or {}).items():
            for message in messages:
                if field in ("entitlement", "entitlements"):
                    lines.append(f"{name}: {message}")
                elif message not in fields.setdefault(field, []):
                    fields[field].append(message)
                placed = True
        if not placed:
            lines.append(f"{name}: {error.message}")
    if lines:
        fields["entitlements"] = lines
    first = lines[0] if lines else next(m for messages in fields.values() for m in messages)
    return ValidationFailed(
        f"Nothing was submitted. {first}", field_errors=fields, code="refused_together", reasons=lines
    )


def _create_stages(request: AccessRequest, decision: PolicyDecision) -> list:
    stages, first = [], []
    routed = stage_approvers(decision.stages, request)
    # Automatic approval asks nobody, so nobody missing can stop it (the preview says the same).
    if not decision.auto_approve and (short := short_stages(decision.stages, routed)):
        raise ValidationFailed(_shortfall(short[0], decision.stages[short[0] - 1]))
    for position, (spec, approvers) in enumerate(zip(decision.stages, routed, strict=True), start=1):
        stage = ApprovalStage.objects.create(
            request=request,
            position=position,
            approver_source=spec["approver"],
            group=spec.get("group", ""),
            quorum=spec.get("quorum", 1),
            reason=spec.get("reason", ""),
        )
        stage.eligible.set(approvers)
        stages.append(stage)
        if position == 1:
            first = approvers
    return first


def notify_approvers(
    request: AccessRequest, approvers: list, *, kind: str = "request.approval_needed", suffix: str = ""
) -> None:
    notify(
        recipients=approvers,
        kind=kind,
        subject=f"Approval needed: {_what(request)} for {request.beneficiary.name}{suffix}",
        body=f"Justification: {request.justification or request.intent or '(none)'}",
        link=reverse("jit:approval_queue"),
        key=f"request:{request.pk}:{kind}:{request.stages.filter(status='approved').count()}",
    )


ASK_KINDS = ("request.approval_needed", "request.reminder", "request.escalated")


def withdraw_asks(request: AccessRequest) -> int:
    """Mark read the asks to decide this request that nobody can answer any more.

    An unread "approval needed" that leads to an empty queue misleads; whoever may still decide
    the waiting stage keeps theirs.
    """
    still_asked: list[int] = []
    if request.status == RequestStatus.PENDING:
        stage = request.stages.filter(status=StageStatus.PENDING).order_by("position").first()
        if stage is not None:
            decided = Approval.objects.filter(request=request).values("approver_id")
            still_asked = list(stage.eligible.exclude(pk__in=decided).values_list("pk", flat=True))
    return (
        Notification.objects.filter(key__startswith=f"request:{request.pk}:", kind__in=ASK_KINDS, read_at__isnull=True)
        .exclude(recipient_id__in=still_asked)
        .update(read_at=clock.database_now())
    )


def _approve(request: AccessRequest, *, actor: ActorLike, action: str = AuditAction.REQUEST_APPROVED) -> None:
    """Final approval: the request is approved and the access fulfilled (now, at its start, or on activation)."""
    now = clock.database_now()
    request.status, request.decided_at = RequestStatus.APPROVED, now
    window = request.policy.get("activation_window_seconds")
    if window and request.renewal_of_id is None:
        request.activation_deadline = max(request.start_at or now, now) + timedelta(seconds=window)
    request.save(update_fields=["status", "decided_at", "activation_deadline", "updated_at"])
    data = {
        "duration_seconds": int(request.duration.total_seconds()),
        "activation_deadline": request.activation_deadline,
        "start_at": request.start_at,
    }
    if action == AuditAction.REQUEST_AUTO_APPROVED:
        # Nobody looked: the trail says which of the entitlement's conditions held instead.
        data["conditions"] = [c for c in request.policy.get("auto_approval", []) if c.get("held")]
    audit_event_record(actor=actor, action=action, target=request, data=data)
    told = told_of_outcome(request)
    try:
        with transaction.atomic():
            if request.renewal_of_id:
                _refuse_if_asker_gone(request)
                request.grant = grant_renew(
                    grant_id=request.renewal_of_id, actor=actor, duration=request.duration, reason=request.justification
                )
                request.save(update_fields=["grant", "updated_at"])
            elif request.activation_deadline is None and (request.start_at is None or request.start_at <= now):
                _issue(request, actor)
    except DomainError as error:
        _fail(request, actor, error.message)
        return
    notify(
        recipients=told,
        kind="request.approved",
        subject=f"Approved: {_what(request)} for {request.beneficiary.name}"
        + (", ready to activate" if request.activation_deadline and request.grant_id is None else ""),
        body=("Activate it before " + f"{request.activation_deadline:%Y-%m-%d %H:%M} UTC.")
        if request.activation_deadline
        else "",
        link=request_url(request),
        key=f"request:{request.pk}:approved",
    )
    callbacks.request_outcome_callback(request)


def _fail(request: AccessRequest, actor: ActorLike, reason: str) -> None:
    """An approved request that cannot become a grant (holder suspended, entitlement retired, a
    separation-of-duties block, the renewed grant ended): it ends as failed, said and audited,
    instead of rolling back the approvals or waiting for ever."""
    request.refresh_from_db(fields=["grant"])
    request.status, request.decision_note = RequestStatus.FAILED, reason
    request.save(update_fields=["status", "decision_note", "updated_at"])
    audit_event_record(actor=actor, action=AuditAction.REQUEST_FAILED, target=request, data={"reason": reason})
    notify(
        recipients=told_of_outcome(request),
        kind="request.failed",
        subject=f"Could not grant {_what(request)} to {request.beneficiary.name}",
        body=reason,
        link=request_url(request),
        key=f"request:{request.pk}:failed",
    )
    callbacks.request_outcome_callback(request)


def told_of_outcome(request: AccessRequest) -> list:
    """Who hears how a request ended: whoever asked, and whoever answers for the holder (a
    machine's owner and backup owner, who may not be the one who asked for it)."""
    holders = holders_of(request.beneficiary)
    extra = [request.requester] if request.requester and request.requester not in holders else []
    return holders + extra


def _refuse_if_asker_gone(request: AccessRequest) -> None:
    """Whoever asked and has since been suspended or offboarded no longer has a say, even for a
    machine another owner still answers for."""
    asker = request.requester_identity or Identity.objects.filter(user_id=request.requester_id).first()
    if asker is not None and asker.status != IdentityStatus.ACTIVE:
        raise ValidationFailed(f"{asker}, who asked, is {asker.get_status_display().lower()}.")
    _refuse_if_chain_broke(request, asker)


def _refuse_if_chain_broke(request: AccessRequest, caller: Identity | None) -> None:
    """A chain checked at submission is checked again when the access starts: an initiator suspended,
    or a delegation revoked or expired, while people decided ends the request, and the access may
    not outrun the chain from now either."""
    hops = [hop["delegation"] for hop in request.delegation_chain if isinstance(hop, dict)]
    if not hops or caller is None:
        return  # no chain, or one recorded as words before chains were verified
    chain = delegation_chain_verify(chain=hops, caller=caller, entitlement=request.entitlement)
    chain.require_within(clock.database_now(), request.duration)


def _issue(request: AccessRequest, actor: ActorLike) -> None:
    _refuse_if_asker_gone(request)
    request.grant = grant_issue(
        actor=actor,
        identity=request.beneficiary,
        entitlement=request.entitlement,
        kind=GrantKind.JIT,
        duration=request.duration,
        reason=request.justification or request.intent,
        request_id=request.pk,
    )
    request.save(update_fields=["grant", "updated_at"])


def _lock_request(request_id: int) -> AccessRequest:
    """Lock the beneficiary, hold the entitlement (after its system), then lock the request.

    The documented order (governance.locks): offboarding locks the beneficiary before its requests,
    retirement the system and the entitlement before their requests, so a decision racing either
    waits instead of deadlocking, and issuing the grant finds what it needs already held.
    """
    row = (
        AccessRequest.objects.filter(pk=request_id)
        .values_list("beneficiary_id", "entitlement_id", "entitlement__system_id")
        .first()
    )
    if row is None:
        raise ValidationFailed(f"Request {request_id} does not exist.")
    beneficiary_id, entitlement_id, system_id = row
    lock_ids(Identity, [beneficiary_id])
    share_entitlement(entitlement_id, system_id=system_id)
    return AccessRequest.objects.select_for_update(no_key=True).get(pk=request_id)


@state_change
def access_request_cancel(*, request_id: int, actor: ActorLike, reason: str = "") -> AccessRequest:
    """The requester withdraws a pending request, or an approved one not yet started; a grant stays a grant.

    Under the request's lock, so a cancel racing with the last approval, an activation or the
    scheduled start ends in exactly one of the two.
    """
    request = _lock_request(request_id)
    policies.require(policies.may_cancel(actor, request), "Only the requester may cancel this request.")
    waiting = request.status == RequestStatus.APPROVED and request.grant_id is None
    if request.status != RequestStatus.PENDING and not waiting:
        raise InvalidTransition(f"Request #{request.pk} is already {request.get_status_display().lower()}.")
    request.status, request.decided_at, request.decision_note = RequestStatus.CANCELLED, clock.database_now(), reason
    request.save(update_fields=["status", "decided_at", "decision_note", "updated_at"])
    audit_event_record(actor=actor, action=AuditAction.REQUEST_CANCELLED, target=request, data={"reason": reason})
    withdraw_asks(request)
    callbacks.request_outcome_callback(request)
    return request


@state_change
def access_request_activate(*, request_id: int, actor: ActorLike) -> AccessRequest:
    """The holder starts approved high-risk access within its activation window."""
    request = _lock_request(request_id)
    policies.require(policies.may_activate(actor, request), "Only the holder may activate this access.")
    now = clock.database_now()
    if request.status != RequestStatus.APPROVED or request.grant_id is not None:
        raise InvalidTransition(f"Request #{request.pk} has nothing to activate.")
    if request.start_at and now < request.start_at:
        raise InvalidTransition(f"This access starts at {request.start_at:%Y-%m-%d %H:%M} UTC.")
    if request.activation_deadline is None or now > request.activation_deadline:
        raise InvalidTransition("The activation window has passed; request the access again.")
    _issue(request, actor)
    audit_event_record(
        actor=actor, action=AuditAction.REQUEST_ACTIVATED, target=request, data={"grant": request.grant_id}
    )
    return request


@state_change
def access_request_start_scheduled(*, request_id: int) -> AccessRequest:
    """Issue the grant of an approved request whose later start has come (beat task; idempotent)."""
    request = _lock_request(request_id)
    due = (
        request.status == RequestStatus.APPROVED
        and request.grant_id is None
        and request.activation_deadline is None
        and request.start_at is not None
        and request.start_at <= clock.database_now()
    )
    if due:
        try:
            with transaction.atomic():
                _issue(request, Actor.system())
        except DomainError as error:
            request.grant = None
            _fail(request, Actor.system(), error.message)
        else:
            audit_event_record(
                actor=Actor.system(),
                action=AuditAction.REQUEST_STARTED,
                target=request,
                data={"grant": request.grant_id},
            )
    return request


#
# Hooks from the inventory
#
def _close_pending(requests, *, actor: ActorLike, note: str, action: AuditAction, data: dict) -> list[int]:
    """Cancel requests still in flight (locked by the caller's queryset), each audited."""
    closed = []
    for request in requests.order_by("pk"):
        request.status, request.decided_at, request.decision_note = RequestStatus.CANCELLED, clock.database_now(), note
        request.save(update_fields=["status", "decided_at", "decision_note", "updated_at"])
        audit_event_record(actor=actor, action=action, target=request, data=data)
        withdraw_asks(request)
        callbacks.request_outcome_callback(request)
        closed.append(request.pk)
    return closed


def close_requests_of_offboarded(identity: Identity, actor: ActorLike) -> list[int]:
    """Offboarding closes the pending requests for that identity and the ones it made.

    The beneficiaries are locked before their requests, the order a decision takes: a person
    offboarded while someone decides on a request they made for their machine must not deadlock.
    """
    mine = Q(beneficiary=identity) | Q(requester_identity=identity)
    if identity.user_id:
        mine |= Q(requester_id=identity.user_id)
    lock_ids(Identity, _in_flight(AccessRequest.objects.filter(mine)).values_list("beneficiary_id", flat=True))
    closing = _in_flight(AccessRequest.objects.select_for_update(no_key=True)).filter(mine)
    return _close_pending(
        closing,
        actor=actor,
        note="Closed: identity offboarded",
        action=AuditAction.REQUEST_CLOSED_BY_OFFBOARDING,
        data={"identity": identity.pk},
    )


def close_renewals_of(grant_ids: list[int], *, actor: ActorLike, note: str) -> list[int]:
    """A grant that ended, or was marked "do not renew", takes its pending renewal with it, so no
    approver is asked to extend access that is gone. One query when, as usual, there is none.

    Callers hold the grants' locks; a decision locks the request before the grant, so a renewal
    being decided right now is skipped, not waited for: that decision finds the grant ended and
    fails the renewal itself.
    """
    renewals = _in_flight(AccessRequest.objects.select_for_update(skip_locked=True, no_key=True)).filter(
        renewal_of_id__in=grant_ids
    )
    return _close_pending(
        renewals, actor=actor, note=note, action=AuditAction.REQUEST_CLOSED_GRANT_ENDED, data={"reason": note}
    )


@state_change
def close_renewals_of_ended_grants() -> list[int]:
    """Every in-flight renewal whose grant is no longer running (or may not be renewed), however it
    ended (expiry, an owner's revocation, offboarding): one query over the few renewals in flight.
    The expiry sweep calls it each run."""
    in_flight = _in_flight(AccessRequest.objects.filter(renewal_of__isnull=False))
    ended = in_flight.exclude(renewal_of__status=GrantStatus.ACTIVE) | in_flight.filter(renewal_of__no_renew=True)
    grant_ids = list(ended.values_list("renewal_of_id", flat=True))
    if not grant_ids:
        return []
    return close_renewals_of(grant_ids, actor=Actor.system(), note="Closed: the access ended")


def refuse_requests_for_retired(entitlement: Entitlement, actor: ActorLike) -> list[int]:
    """Retiring an entitlement closes the requests still waiting for it."""
    pending = _in_flight(AccessRequest.objects.select_for_update(no_key=True)).filter(entitlement=entitlement)
    return _close_pending(
        pending,
        actor=actor,
        note="Closed: entitlement retired",
        action=AuditAction.REQUEST_REFUSED_BY_RETIREMENT,
        data={"entitlement": entitlement.pk},
    )
