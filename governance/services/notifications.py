"""Tell people things: an in-app notification and an email through the outbox, in the caller's transaction."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.handlers import EMAIL
from audit.kernel import clock
from audit.models import OutboxMessage
from audit.outbox import enqueue_many, outbox_enqueue
from audit.retention import delete_in_batches, retention_cutoff

from ..models import Notification


def notify(*, recipients: Iterable, kind: str, subject: str, body: str = "", link: str = "", key: str) -> int:
    """Notify each distinct active user once per `key`.

    Callers run in outbox handlers and beat tasks, which may deliver twice; a key already used for
    a person (a unique constraint) makes the repeat a no-op, for the in-app notice and the email.
    """
    sent = 0
    seen: set[int] = set()
    for user in recipients:
        if user is None or user.pk in seen or not user.is_active:
            continue
        seen.add(user.pk)
        message_key = f"{key}:user:{user.pk}"
        _, created = Notification.objects.get_or_create(
            recipient=user, key=key[:200], defaults={"kind": kind, "subject": subject[:200], "body": body, "link": link}
        )
        if not created:
            continue
        if user.email:
            url = _portal_url(link)
            outbox_enqueue(
                kind=EMAIL,
                idempotency_key=message_key,
                payload={"to": [user.email], "subject": f"[Access portal] {subject}", "body": f"{body}\n\n{url}\n"},
            )
        sent += 1
    return sent


@dataclass(frozen=True)
class Notice:
    """One `notify` of a batch for `notify_many`."""

    recipients: Iterable
    kind: str
    subject: str
    body: str = ""
    link: str = ""
    key: str = ""


def notify_many(notices: Iterable[Notice]) -> int:
    """`notify` for many notices at once, set-based (the outbox's batched confirmations).

    The same rules: each distinct active user once per notice, a key already used for a person is a
    no-op, an email for each new notification of a user with an address. No query when nobody is
    told; else one to see which keys were used, one insert, one for the emails.
    """
    wanted: dict[tuple[int, str], tuple[Notice, object]] = {}
    for notice in notices:
        for user in notice.recipients:
            if user is not None and user.is_active:
                wanted.setdefault((user.pk, notice.key[:200]), (notice, user))
    if not wanted:
        return 0
    used = set(
        Notification.objects.filter(
            recipient_id__in={pk for pk, _ in wanted}, key__in={key for _, key in wanted}
        ).values_list("recipient_id", "key")
    )
    new = [(notice, user) for pair, (notice, user) in wanted.items() if pair not in used]
    Notification.objects.bulk_create(
        [
            Notification(
                recipient=user, key=n.key[:200], kind=n.kind, subject=n.subject[:200], body=n.body, link=n.link
            )
            for n, user in new
        ],
        ignore_conflicts=True,  # told meanwhile by another worker: still once
    )
    enqueue_many(
        [
            OutboxMessage(
                kind=EMAIL,
                idempotency_key=f"{n.key}:user:{user.pk}",
                payload={
                    "to": [user.email],
                    "subject": f"[Access portal] {n.subject}",
                    "body": f"{n.body}\n\n{_portal_url(n.link)}\n",
                },
            )
            for n, user in new
            if user.email
        ]
    )
    return len(new)


def _portal_url(link: str) -> str:
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}{link}" if link else settings.PORTAL_BASE_URL


def users_of(*identities) -> list:
    """The login users behind identities (people), skipping those without one."""
    return [i.user for i in identities if i is not None and i.user_id is not None]


def holders_of(identity) -> list:
    """Who answers for an identity's access: the person, or a machine's owner and backup owner."""
    if identity.kind == "human":
        return users_of(identity)
    return users_of(identity.owner, identity.backup_owner)


@transaction.atomic
def notifications_mark_read(*, user, ids: list[int] | None = None) -> int:
    """Mark the user's own notifications read (all when `ids` is None); never another's."""
    queryset = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    return queryset.update(read_at=clock.database_now())


def notifications_purge_read(*, older_than: timedelta | None = None, batch_size: int | None = None) -> int:
    """Delete notifications read longer ago than `older_than` (NOTIFICATION_RETENTION_DAYS; 0 keeps them).

    Unread ones always stay: someone still has to see them. Batches, each its own short
    transaction, so a large backlog never holds locks for long and an interrupted run loses nothing.
    """
    older_than = retention_cutoff(older_than, settings.NOTIFICATION_RETENTION_DAYS)
    if older_than is None:
        return 0
    due = Notification.objects.filter(read_at__isnull=False, read_at__lt=timezone.now() - older_than)
    return delete_in_batches(due, batch_size)
