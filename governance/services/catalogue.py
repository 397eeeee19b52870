"""The catalogue: systems, entitlements and SoD rules, kept true by their owners."""

from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, audit_event_record, state_change

from .. import policies
from ..approval_stages import validate_approval_stages  # re-exported: forms and views import it from here
from ..choices import IdentityKind, IdentityStatus, LifecycleStatus
from ..connectors import connector_settings_clean
from ..connectors.secrets import secrets_encrypt, settings_with_secrets
from ..errors import InvalidTransition, ValidationFailed
from ..locks import lock, lock_entitlement
from ..models import Entitlement, Grant, Identity, SodRule, System
from ..policy_loosening import loosened_fields
from .certification_schedules import micro_review_tier_raised
from .common import check, diff, full_clean_or_fail, is_system, snapshot
from .external_ids import refuse_reserved_external_id
from .findings import findings_recheck_on_commit
from .policy_changes import policy_change_hold

SYSTEM_FIELDS = ["name", "description", "owner", "criticality", "connector", "connector_settings", "external_id"]
# How a system is reached stays with admins and imports; its owner keeps the rest true.
SYSTEM_ADMIN_FIELDS = frozenset({"connector", "connector_settings", "external_id"})
# What the audit trail records of a system: connector settings may hold secrets, so the trail
# records only which of their keys changed (`connector_settings_changed`), never a value.
SYSTEM_AUDITED = [name for name in SYSTEM_FIELDS if name != "connector_settings"]
ENTITLEMENT_FIELDS = [
    "name",
    "target_name",
    "owner",
    "business_purpose",
    "risk_tier",
    "requestable",
    "max_duration",
    "approval_stages",
    "auto_approve_machines",
    "auto_approve_kinds",
    "auto_approve_max_risk",
    "auto_approve_max_finding_severity",
    "auto_approve_max_minutes",
    "auto_approve_intent_fields",
    "auto_approve_max_per_hour",
    "break_glass_eligible",
    "justification_required",
    "ticket_required",
    "allowed_identity_kinds",
    "review_cadence_days",
    "external_id",
]
# Later layers register what else retiring an entitlement must close (jit refuses pending requests).
RETIREMENT_HOOKS: list[Callable[[Entitlement, ActorLike], Any]] = []


def _require_active_owner(owner: Identity | None) -> None:
    if owner is None:
        raise ValidationFailed("An owner is required.", field_errors={"owner": ["Required."]})
    if owner.kind != IdentityKind.HUMAN or owner.status != IdentityStatus.ACTIVE:
        raise ValidationFailed(
            "The owner must be an active person.", field_errors={"owner": ["Must be an active person."]}
        )


#
# Systems
#
def _apply_connector_settings(system: System, submitted: Any, *, kept: dict[str, Any]) -> None:
    """Validate the settings with the connector's schema and encrypt its secrets onto the system.

    `kept` is what the system ran with (plain settings and decrypted secrets): submitted settings
    change it one by one, and a secret left out keeps its value. The audit trail records only the names of changed settings, never a value.
    """
    if not isinstance(submitted, dict):
        raise ValidationFailed(
            "Connector settings must be an object of named settings.",
            field_errors={"connector_settings": ["Must be an object."]},
        )
    plain, secrets = connector_settings_clean(system.connector, submitted, current=kept)
    system.connector_settings, system.connector_secrets = plain, secrets_encrypt(secrets)


def _changed_setting_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The names of the connector settings added, removed or changed; never their values."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key, ...) != after.get(key, ...))


def _refuse_name_clash(obj: System | Entitlement) -> None:
    """One live system (one live entitlement per system) per name, reported beside the name field.

    The database constraint has a condition, so Django would report it as a form-wide error
    (and skips it for entitlements, whose system is validated elsewhere); this says it plainly.
    """
    same = type(obj).objects.filter(name=obj.name, status=LifecycleStatus.ACTIVE).exclude(pk=obj.pk)
    where = ""
    if isinstance(obj, Entitlement):
        same, where = same.filter(system_id=obj.system_id), f" in {obj.system.name}"
    if same.exists():
        what = type(obj)._meta.verbose_name
        raise ValidationFailed(
            f"A live {what} named “{obj.name}” already exists{where}.",
            field_errors={"name": [f"Another live {what}{where} has this name."]},
        )


def _save_named(obj: System | Entitlement) -> None:
    """Save in a savepoint: a concurrent write taking the same live name (or external id) is a field
    error, never a 500. `_refuse_name_clash` cannot see a row another transaction has not committed yet."""
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError as exc:
        what = type(obj)._meta.verbose_name
        if "external_id" in str(exc):
            message = f"Another {what} has this external id."
            raise ValidationFailed(message, field_errors={"external_id": [message]}) from None
        where = f" in {obj.system.name}" if isinstance(obj, Entitlement) else ""
        raise ValidationFailed(
            f"A live {what} named “{obj.name}” already exists{where}.",
            field_errors={"name": [f"Another live {what}{where} has this name."]},
        ) from None


@state_change
def system_create(*, actor: ActorLike, name: str, owner: Identity, **fields: Any) -> System:
    check(actor, lambda user, _s: policies.is_admin(user), None, "Only admins add systems.")
    _require_active_owner(owner)
    system = System(name=name, owner=owner, **fields)
    refuse_reserved_external_id(system.external_id)
    _apply_connector_settings(system, system.connector_settings, kept={})
    changed_keys = _changed_setting_keys({}, settings_with_secrets(system))
    _refuse_name_clash(system)
    full_clean_or_fail(system, exclude=["owner"])
    _save_named(system)
    data: dict[str, Any] = {"after": snapshot(system, SYSTEM_AUDITED)}
    if changed_keys:
        data["connector_settings_changed"] = changed_keys
    audit_event_record(actor=actor, action=AuditAction.SYSTEM_CREATED, target=system, data=data)
    return system


@state_change
def system_update(*, system_id: int, actor: ActorLike, changes: dict[str, Any]) -> System:
    system = lock(System, system_id)
    check(actor, policies.can_edit_system, system, "Only the system's owner or an admin may edit it.")
    if system.status != LifecycleStatus.ACTIVE:
        raise InvalidTransition(f"{system} is retired.")
    unknown = set(changes) - set(SYSTEM_FIELDS)
    if unknown:
        raise ValidationFailed(f"These fields cannot be edited: {', '.join(sorted(unknown))}.")
    current = snapshot(system, SYSTEM_FIELDS)
    # Sending the current value back (a PUT of what was read) is not a change; changing one is admin-only.
    admin_changes = sorted(name for name in SYSTEM_ADMIN_FIELDS & set(changes) if changes[name] != current[name])
    if admin_changes:
        check(
            actor,
            lambda user, _s: policies.is_admin(user),
            system,
            f"Only admins change a system's {', '.join(admin_changes)}.",
        )
    if "external_id" in changes:
        refuse_reserved_external_id(changes["external_id"], current=current["external_id"])
    before_settings = settings_with_secrets(system)
    before = snapshot(system, SYSTEM_AUDITED)
    for name, value in changes.items():
        setattr(system, name, value)
    if "owner" in changes:
        _require_active_owner(system.owner)
    changed_keys = []
    if system.connector != current["connector"] or "connector_settings" in changes:
        # Changing the connector starts its settings afresh; keeping it keeps the secrets not retyped.
        kept = before_settings if system.connector == current["connector"] else {}
        _apply_connector_settings(system, changes.get("connector_settings", kept), kept=kept)
        changed_keys = _changed_setting_keys(before_settings, settings_with_secrets(system))
    _refuse_name_clash(system)
    full_clean_or_fail(system, exclude=["owner"])
    change: dict[str, Any] = diff(before, snapshot(system, SYSTEM_AUDITED))
    if changed_keys:
        change["connector_settings_changed"] = changed_keys
    if change["after"] or changed_keys:
        _save_named(system)
        audit_event_record(actor=actor, action=AuditAction.SYSTEM_UPDATED, target=system, data=change)
    return system


@state_change
def system_retire(*, system_id: int, actor: ActorLike, reason: str) -> System:
    """Retire a system and every entitlement in it; live grants go to revocation."""
    system = lock(System, system_id)
    check(actor, policies.can_edit_system, system, "Only the system's owner or an admin may retire it.")
    if system.status == LifecycleStatus.RETIRED:
        return system
    for entitlement_id in system.entitlements.filter(status=LifecycleStatus.ACTIVE).values_list("pk", flat=True):
        entitlement_retire(entitlement_id=entitlement_id, actor=actor, reason=f"System retired: {reason}")
    system.status, system.retired_at = LifecycleStatus.RETIRED, clock.database_now()
    system.save(update_fields=["status", "retired_at", "updated_at"])
    audit_event_record(actor=actor, action=AuditAction.SYSTEM_RETIRED, target=system, data={"reason": reason})
    return system


#
# Entitlements
#
@state_change
def entitlement_create(*, actor: ActorLike, system: System, name: str, owner: Identity, **fields: Any) -> Entitlement:
    # Locked and read again: a system retired meanwhile (system_retire holds this lock) takes no new entitlements.
    system = lock(System, system.pk)
    check(actor, policies.can_edit_system, system, "Only the system's owner or an admin may add entitlements.")
    if system.status != LifecycleStatus.ACTIVE:
        raise ValidationFailed(f"{system} is retired.")
    _require_active_owner(owner)
    if "approval_stages" in fields:
        fields["approval_stages"] = validate_approval_stages(fields["approval_stages"])
    _check_kinds(fields.get("allowed_identity_kinds"))
    entitlement = Entitlement(system=system, name=name, owner=owner, **fields)
    refuse_reserved_external_id(entitlement.external_id)
    _refuse_name_clash(entitlement)
    full_clean_or_fail(entitlement, exclude=["owner", "system"])
    _save_named(entitlement)
    audit_event_record(
        actor=actor,
        action=AuditAction.ENTITLEMENT_CREATED,
        target=entitlement,
        data={"after": {"system": system.pk, **snapshot(entitlement, ENTITLEMENT_FIELDS)}},
    )
    return entitlement


def _check_kinds(kinds: Any) -> None:
    if kinds is None:
        return
    if not isinstance(kinds, list) or not kinds or set(kinds) - set(IdentityKind.values):
        raise ValidationFailed(
            "Allowed identity kinds must be a non-empty list of known kinds.",
            field_errors={"allowed_identity_kinds": [f"Choose from {', '.join(IdentityKind.values)}."]},
        )


@state_change
def entitlement_update(*, entitlement_id: int, actor: ActorLike, changes: dict[str, Any]) -> Entitlement:
    """Edit a catalogue entry. On a high or critical entitlement, the fields that loosen its policy are
    held for another admin's approval (`held_policy_change` on the result); the rest applies at once."""
    entitlement = lock_entitlement(entitlement_id)
    check(actor, policies.can_edit_entitlement, entitlement, "Only the entitlement's owners or an admin may edit it.")
    if entitlement.status != LifecycleStatus.ACTIVE:
        raise InvalidTransition(f"{entitlement} is retired.")
    unknown = set(changes) - set(ENTITLEMENT_FIELDS)
    if unknown:
        raise ValidationFailed(f"These fields cannot be edited: {', '.join(sorted(unknown))}.")
    if "approval_stages" in changes:
        changes = {**changes, "approval_stages": validate_approval_stages(changes["approval_stages"])}
    _check_kinds(changes.get("allowed_identity_kinds"))
    if "external_id" in changes:
        refuse_reserved_external_id(changes["external_id"], current=entitlement.external_id)
    before = snapshot(entitlement, ENTITLEMENT_FIELDS)
    for name, value in changes.items():
        setattr(entitlement, name, value)
    if "owner" in changes:
        _require_active_owner(entitlement.owner)
    _refuse_name_clash(entitlement)
    full_clean_or_fail(entitlement, exclude=["owner", "system"])
    after = snapshot(entitlement, ENTITLEMENT_FIELDS)
    loosens = {} if is_system(actor) else loosened_fields(before, after)
    if loosens:
        # The loosening waits for a second admin; the rest of the edit applies now.
        entitlement.held_policy_change = policy_change_hold(
            entitlement=entitlement, actor=actor, before=before, after=after, loosens=loosens
        )
        for name in loosens:
            setattr(entitlement, name, before[name])
    change = diff(before, snapshot(entitlement, ENTITLEMENT_FIELDS))
    if change["after"]:
        _save_named(entitlement)
        audit_event_record(actor=actor, action=AuditAction.ENTITLEMENT_UPDATED, target=entitlement, data=change)
        micro_review_tier_raised(entitlement, change)  # a raised tier opens a review of who holds it
        if "owner" in change["after"]:  # an ownerless entitlement's finding closes when the change commits
            findings_recheck_on_commit([entitlement.owner_id])
    return entitlement


@state_change
def entitlement_retire(*, entitlement_id: int, actor: ActorLike, reason: str) -> Entitlement:
    """Retire an entitlement: no new requests or grants, pending work refused, live grants revoked."""
    from .grants import grants_revoke_many

    entitlement = lock_entitlement(entitlement_id)
    check(actor, policies.can_edit_entitlement, entitlement, "Only the entitlement's owners or an admin may retire it.")
    if entitlement.status == LifecycleStatus.RETIRED:
        return entitlement
    entitlement.status, entitlement.requestable = LifecycleStatus.RETIRED, False
    entitlement.retired_at = clock.database_now()
    entitlement.save(update_fields=["status", "requestable", "retired_at", "updated_at"])
    # The lock order (governance.locks): the requests still waiting for it (the hooks), then its grants.
    hooks = {hook.__name__: hook(entitlement, actor) for hook in RETIREMENT_HOOKS}
    revoked = grants_revoke_many(
        grant_ids=Grant.objects.live().filter(entitlement=entitlement).values_list("pk", flat=True),
        actor=actor,
        reason=f"Entitlement retired: {reason}",
        end_reason="retired",
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.ENTITLEMENT_RETIRED,
        target=entitlement,
        data={"reason": reason, "grants_revoked": revoked, **hooks},
    )
    return entitlement


#
# Separation-of-duties rules
#
SOD_RULE_FIELDS = ["name", "description", "severity", "action"]


def _sod_entitlement_ids(entitlements: list[Entitlement], *, already: frozenset[int] = frozenset()) -> list[int]:
    """The rule's distinct entitlements, sorted by id: at least two, and none retired unless already in the rule.

    A retired entitlement can no longer be held, so a rule gains nothing from it; one already in
    the rule stays, so that renaming a rule never silently changes what it covers.
    """
    ids = sorted({e.pk for e in entitlements})
    if len(ids) < 2:
        raise ValidationFailed(
            "An SoD rule needs at least two different entitlements.",
            field_errors={"entitlements": ["Choose two or more different entitlements."]},
        )
    retired = [
        str(e)
        for e in entitlements
        if e.pk not in already and (e.status != LifecycleStatus.ACTIVE or e.system.status != LifecycleStatus.ACTIVE)
    ]
    if retired:
        raise ValidationFailed(
            f"Retired entitlements cannot be added to an SoD rule: {', '.join(sorted(set(retired)))}.",
            field_errors={"entitlements": ["Choose live entitlements only."]},
        )
    return ids


def _refuse_sod_name_clash(rule: SodRule) -> None:
    """One rule per name, active or not (the column is unique), reported beside the name field."""
    if SodRule.objects.filter(name=rule.name).exclude(pk=rule.pk).exists():
        raise ValidationFailed(
            f"An SoD rule named “{rule.name}” already exists.",
            field_errors={"name": ["Another SoD rule has this name."]},
        )


def _save_sod_rule(rule: SodRule) -> None:
    """Save in a savepoint: a concurrent rule taking the same name is a field error, never a 500."""
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise ValidationFailed(
            f"An SoD rule named “{rule.name}” already exists.",
            field_errors={"name": ["Another SoD rule has this name."]},
        ) from None


def _require_sod_admin(actor: ActorLike, message: str) -> None:
    check(actor, lambda user, _r: policies.is_admin(user), None, message)


@state_change
def sod_rule_create(
    *, actor: ActorLike, name: str, entitlements: list[Entitlement], severity: str, action: str, description: str = ""
) -> SodRule:
    """Define entitlements that must not be held together. Admins only; two or more live entitlements."""
    _require_sod_admin(actor, "Only admins define SoD rules.")
    ids = _sod_entitlement_ids(entitlements)
    rule = SodRule(name=name, severity=severity, action=action, description=description)
    _refuse_sod_name_clash(rule)
    full_clean_or_fail(rule)
    _save_sod_rule(rule)
    rule.entitlements.set(ids)
    audit_event_record(
        actor=actor,
        action=AuditAction.SOD_RULE_CREATED,
        target=rule,
        data={"entitlements": ids, "severity": severity, "action": action},
    )
    return rule


@state_change
def sod_rule_update(
    *,
    rule_id: int,
    actor: ActorLike,
    name: str,
    entitlements: list[Entitlement],
    severity: str,
    action: str,
    description: str = "",
) -> SodRule:
    """Change a rule (active or not); the audit event holds the changed fields before and after.

    Sending the rule back unchanged writes nothing. New requests see the change at once; requests
    already routed keep the stages they were given.
    """
    _require_sod_admin(actor, "Only admins change SoD rules.")
    rule = lock(SodRule, rule_id)
    current_ids = frozenset(rule.entitlements.values_list("pk", flat=True))
    ids = _sod_entitlement_ids(entitlements, already=current_ids)
    before = {**snapshot(rule, SOD_RULE_FIELDS), "entitlements": sorted(current_ids)}
    rule.name, rule.severity, rule.action, rule.description = name, severity, action, description
    _refuse_sod_name_clash(rule)
    full_clean_or_fail(rule)
    change = diff(before, {**snapshot(rule, SOD_RULE_FIELDS), "entitlements": ids})
    if not change["after"]:
        return rule
    _save_sod_rule(rule)
    if "entitlements" in change["after"]:
        rule.entitlements.set(ids)
    audit_event_record(actor=actor, action=AuditAction.SOD_RULE_UPDATED, target=rule, data=change)
    return rule


def _sod_rule_set_active(*, rule_id: int, actor: ActorLike, reason: str, active: bool) -> SodRule:
    _require_sod_admin(actor, "Only admins deactivate or reactivate SoD rules.")
    rule = lock(SodRule, rule_id)
    # Raise rather than no-op: a second click or a stale page must not record a change that did not happen.
    if rule.is_active == active:
        raise InvalidTransition(f"SoD rule “{rule.name}” is already {'active' if active else 'inactive'}.")
    rule.is_active = active
    rule.save(update_fields=["is_active"])
    audit_event_record(
        actor=actor,
        action=AuditAction.SOD_RULE_REACTIVATED if active else AuditAction.SOD_RULE_DEACTIVATED,
        target=rule,
        data={"reason": reason},
    )
    return rule


@state_change
def sod_rule_deactivate(*, rule_id: int, actor: ActorLike, reason: str) -> SodRule:
    """Stop applying a rule to new requests, grants and hygiene scans; it is kept, and can come back."""
    return _sod_rule_set_active(rule_id=rule_id, actor=actor, reason=reason, active=False)


@state_change
def sod_rule_reactivate(*, rule_id: int, actor: ActorLike, reason: str) -> SodRule:
    """Apply a deactivated rule again, from the next request on."""
    return _sod_rule_set_active(rule_id=rule_id, actor=actor, reason=reason, active=True)
