"""What else happens to logins and roles outside the services (a shell, a command, Django's own views)
goes to the audit trail too: a password changed, a login or a role group deleted, a role's permissions."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, pre_delete, pre_save
from django.dispatch import receiver

from audit.choices import AuditAction
from audit.context import get_context
from audit.services import Target, audit_event_record, chain_first
from governance.roles import bootstrapping

User = get_user_model()


def _actor():
    return get_context().user


@receiver(pre_save, sender=User)
def _password_changed(sender, instance, raw, using, update_fields, **kwargs):
    """Never the password or its hash: only that it changed, for whom, and whether by the person themself."""
    if raw or instance._state.adding or (update_fields is not None and "password" not in update_fields):
        return
    stored = sender._default_manager.using(using).filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is None or stored == instance.password:
        return
    chain_first()
    actor = _actor()
    audit_event_record(
        actor=actor,
        action=AuditAction.PASSWORD_CHANGED,
        target=instance,
        data={
            "user": instance.get_username(),
            "by_self": getattr(actor, "pk", None) == instance.pk,
            "usable": instance.has_usable_password(),
        },
    )


@receiver(pre_delete, sender=User)
def _login_deleted(sender, instance, using, **kwargs):
    chain_first()
    audit_event_record(
        actor=_actor(),
        action=AuditAction.LOGIN_DELETED,
        target=Target(User._meta.label_lower, str(instance.pk), instance.get_username()),
        data={
            "user": instance.get_username(),
            "roles": sorted(instance.groups.using(using).values_list("name", flat=True)),
            "is_staff": instance.is_staff,
            "is_superuser": instance.is_superuser,
            "identity": getattr(getattr(instance, "identity", None), "pk", None),
        },
    )


@receiver(pre_delete, sender=Group)
def _group_deleted(sender, instance, using, **kwargs):
    chain_first()
    audit_event_record(
        actor=_actor(),
        action=AuditAction.GROUP_DELETED,
        target=Target("auth.group", str(instance.pk), instance.name),
        data={
            "group": instance.name,
            "members": sorted(instance.user_set.using(using).values_list(User.USERNAME_FIELD, flat=True)),
            "permissions": sorted(
                f"{p.content_type.app_label}.{p.codename}"
                for p in instance.permissions.using(using).select_related("content_type")
            ),
        },
    )


@receiver(m2m_changed, sender=Group.permissions.through)
def _group_permissions_changed(sender, instance, action, reverse, model, pk_set, using, **kwargs):
    if reverse or action not in ("pre_add", "pre_remove", "pre_clear") or bootstrapping():
        return
    chain_first()
    if action == "pre_clear":
        codenames = instance.permissions.using(using)
    else:
        asked = model._default_manager.using(using).filter(pk__in=pk_set)
        # Only what changes: permissions added that it lacks, removed that it holds.
        codenames = asked.exclude(group=instance) if action == "pre_add" else asked.filter(group=instance)
    names = sorted(f"{p.content_type.app_label}.{p.codename}" for p in codenames.select_related("content_type"))
    if names:
        audit_event_record(
            actor=_actor(),
            action=AuditAction.GROUP_PERMISSIONS_CHANGED,
            target=Target("auth.group", str(instance.pk), instance.name),
            data={"group": instance.name, "added" if action == "pre_add" else "removed": names},
        )
