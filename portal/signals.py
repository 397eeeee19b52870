"""Logins, logouts, failed logins, lock-outs and changes of role or privilege go to the audit trail like every other decision."""

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model, signals
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver

from audit.choices import AuditAction
from audit.context import get_context
from audit.services import EventSpec, Target, audit_event_record, audit_events_record_many, chain_first

from .middleware import session_mark_signed_in
from .profiles import remember_time_zone


@receiver(signals.user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        session_mark_signed_in(request.session)
        remember_time_zone(request.session, user)
    audit_event_record(actor=user, action=AuditAction.USER_LOGGED_IN, target=user)


@receiver(signals.user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        reason = getattr(request, "session_end_reason", None)
        audit_event_record(
            actor=user, action=AuditAction.USER_LOGGED_OUT, target=user, data={"reason": reason} if reason else None
        )


@receiver(signals.user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # Only the username typed: never the password Django already masked.
    audit_event_record(
        actor=None, action=AuditAction.USER_LOGIN_FAILED, data={"username": str(credentials.get("username", ""))[:150]}
    )


@receiver(user_locked_out)
def _locked_out(sender, request, username, ip_address, **kwargs):
    # django-axes refused a sign-in: too many failures for this login or from this address (cool-off in data).
    audit_event_record(
        actor=None,
        action=AuditAction.USER_LOCKED_OUT,
        data={
            "username": str(username or "")[:150],
            "client_ip": str(ip_address or "")[:45],
            "cool_off_seconds": int(settings.AXES_COOLOFF_TIME.total_seconds()) if settings.AXES_COOLOFF_TIME else None,
        },
    )


#
# Roles (group membership) and staff/superuser status: changed in the admin, a shell or a command,
# never through a service, so they are audited here. The actor is the signed-in user of the web
# request (the audit context), else the system.
#
User = get_user_model()
_PRIVILEGES = ("is_staff", "is_superuser")


def _context_actor():
    return get_context().user


@receiver(m2m_changed, sender=User.groups.through)
def _roles_changed(sender, instance, action, reverse, model, pk_set, using, **kwargs):
    if action in ("pre_add", "pre_remove", "pre_clear"):
        chain_first()  # before the membership rows are written
    if action == "pre_remove":
        instance._audit_roles_leaving = _memberships(sender, instance, reverse, pk_set, using)
    elif action == "pre_clear":
        instance._audit_roles_leaving = _memberships(sender, instance, reverse, None, using)
    elif action in ("post_remove", "post_clear"):
        _record_roles(AuditAction.ROLE_REMOVED, instance.__dict__.pop("_audit_roles_leaving", []), using)
    elif action == "post_add" and pk_set:
        # Django passes only the groups (or users) that were not there already.
        pairs = [(pk, instance.pk) if reverse else (instance.pk, pk) for pk in pk_set]
        _record_roles(AuditAction.ROLE_ASSIGNED, pairs, using)


def _memberships(through, instance, reverse, pk_set, using) -> list[tuple[int, int]]:
    """(user id, group id) of the rows about to go: a removal of a group never held is no event."""
    user_field = User.groups.field.m2m_field_name()
    group_field = User.groups.field.m2m_reverse_field_name()
    rows = through._default_manager.using(using).filter(**{group_field if reverse else user_field: instance.pk})
    if pk_set is not None:
        rows = rows.filter(**{f"{user_field if reverse else group_field}__in": pk_set})
    return list(rows.values_list(f"{user_field}_id", f"{group_field}_id"))


def _record_roles(action: AuditAction, pairs: list[tuple[int, int]], using: str) -> None:
    if not pairs:
        return
    users = dict(
        User._default_manager.using(using).filter(pk__in={u for u, _ in pairs}).values_list("pk", User.USERNAME_FIELD)
    )
    groups = dict(Group.objects.using(using).filter(pk__in={g for _, g in pairs}).values_list("pk", "name"))
    audit_events_record_many(
        actor=_context_actor(),
        events=[
            EventSpec(
                action,
                Target(User._meta.label_lower, str(user_id), str(users.get(user_id, ""))),
                {"user": users.get(user_id, ""), "group": groups.get(group_id, "")},
            )
            for user_id, group_id in sorted(pairs)
        ],
    )


@receiver(pre_save, sender=User)
def _privileges_before(sender, instance, raw, using, update_fields, **kwargs):
    if raw or (update_fields is not None and not set(_PRIVILEGES) & set(update_fields)):
        return
    # The user's row is about to be locked by this save, and its audit event will need the chain.
    chain_first()
    stored = None
    if not instance._state.adding:
        # Read from the database, not remembered at load: another writer may have changed them since.
        stored = sender._default_manager.using(using).filter(pk=instance.pk).values(*_PRIVILEGES).first()
    instance._audit_privileges_before = stored or dict.fromkeys(_PRIVILEGES, False)


@receiver(post_save, sender=User)
def _privileges_changed(sender, instance, raw, using, update_fields, **kwargs):
    before = instance.__dict__.pop("_audit_privileges_before", None)
    if raw or before is None:
        return
    after = {name: bool(getattr(instance, name)) for name in _PRIVILEGES}
    changed = [name for name in _PRIVILEGES if bool(before[name]) != after[name]]
    if update_fields is not None:
        changed = [name for name in changed if name in update_fields]
    if changed:
        audit_event_record(
            actor=_context_actor(),
            action=AuditAction.USER_PRIVILEGES_CHANGED,
            target=instance,
            data={
                "user": instance.get_username(),
                "before": {name: bool(before[name]) for name in changed},
                "after": {name: after[name] for name in changed},
            },
        )
