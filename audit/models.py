"""The append-only, hash-chained audit trail, and the outbox through which side effects leave."""

from django.db import models
from django.utils import timezone

from .choices import ActorType, Channel

GENESIS_HASH = "0" * 64


class AuditTrailIsAppendOnly(Exception):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditTrailIsAppendOnly("Audit events cannot be updated.")

    def delete(self):
        raise AuditTrailIsAppendOnly("Audit events cannot be deleted.")

    def for_target(self, obj: models.Model) -> "AuditEventQuerySet":
        return self.filter(target_type=obj._meta.label_lower, target_id=str(obj.pk))


class AuditEvent(models.Model):
    """One thing that happened: who did what to which object, from where, and why.

    Events form a chain: `hash` is SHA-256 over the event's canonical form and `prev_hash`, and
    `seq` numbers the chain without gaps, so an edited, inserted or deleted row is detectable
    (`manage.py verify_audit`). Actors and targets are stored as ids and labels, not foreign
    keys, so the trail outlives what it describes.
    """

    # Unique: the chain's order. Serves every trail page and timeline (ORDER BY seq, keyset pages by
    # seq: audit.trail_pages), the writer's read of the chain's head (audit.services) and verify_audit's walk.
    seq = models.BigIntegerField("chain position", unique=True, editable=False)
    occurred_at = models.DateTimeField("time")  # indexed below
    actor_type = models.CharField("actor type", max_length=16, choices=ActorType.choices)
    # Not indexed: the audit page's actor filter ORs these with a text match on actor_label, which no
    # btree serves, so the page walks `seq` whatever; nothing else looks events up by actor.
    actor_user_id = models.BigIntegerField("actor user id", null=True, blank=True)
    actor_identity_id = models.BigIntegerField("actor identity id", null=True, blank=True)
    actor_label = models.CharField("actor", max_length=200)
    channel = models.CharField("channel", max_length=16, choices=Channel.choices)
    # Validated against the AuditAction registry by the writer; no `choices` here, so a new action needs no migration.
    action = models.CharField("action", max_length=64)
    target_type = models.CharField("target type", max_length=64, blank=True)
    target_id = models.CharField("target id", max_length=64, blank=True)
    target_label = models.CharField("target", max_length=200, blank=True)
    data = models.JSONField("data", default=dict, blank=True)
    correlation_id = models.CharField("correlation id", max_length=64, blank=True)
    client_ip = models.CharField("client address", max_length=45, blank=True)
    prev_hash = models.CharField("previous hash", max_length=64)
    # Not indexed: nothing looks an event up by its hash (the chain is walked by `seq`), and a random
    # 64-character key is the dearest index to keep up on every insert.
    hash = models.CharField("hash", max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name = "audit event"
        # Only what a portal query uses, each named with it (migration 0007 has the measurements); plain
        # btrees: Django's db_index on a CharField adds a text-pattern copy on PostgreSQL that no query
        # here uses, and every index is paid for on each of millions of inserts. With the primary key
        # and `seq`, six in all (there were twelve).
        indexes = [
            # Events about an object: every timeline (audit.timeline), the history panels of the grant,
            # request, login and SoD pages (`for_target`), the audit page's target filter, a
            # certification item's decision (governance.certification_reports), break-glass windows.
            models.Index(fields=["target_type", "target_id"], name="audit_event_target_idx"),
            # The audit page's action filter: one action, or an area's actions (audit.filters).
            models.Index(fields=["action"], name="audit_event_action_idx"),
            # The audit page's correlation-id filter: every event of one request or task.
            models.Index(fields=["correlation_id"], name="audit_event_correlation_idx"),
            # The audit page's since/until and a break-glass activation's window (jit
            # selectors_break_glass_reports.window_events); time only grows, so inserts append.
            models.Index(fields=["occurred_at"], name="audit_event_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_label}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditTrailIsAppendOnly("Audit events cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditTrailIsAppendOnly("Audit events cannot be deleted.")


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead"


class OutboxMessage(models.Model):
    """A side effect (email, connector call) recorded in the transaction that caused it.

    The dispatcher delivers due rows with backoff; the broker only wakes it early, so a broker
    outage delays a message but never loses it.
    """

    kind = models.CharField("kind", max_length=64)
    payload = models.JSONField("payload", default=dict)
    # Unique (audit_outboxmessage_idempotency_key_key): enqueuing looks a key up (outbox_enqueue's
    # get_or_create, reconciliation's last removal ask) or skips it on conflict (enqueue_many, the
    # revoke sweeps' INSERT ... ON CONFLICT). Its text-pattern copy is dropped (audit 0010): no LIKE.
    idempotency_key = models.CharField("idempotency key", max_length=200, unique=True)
    status = models.CharField("status", max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField("attempts", default=0)
    next_attempt_at = models.DateTimeField("next attempt", default=timezone.now)
    last_error = models.TextField("last error", blank=True)
    created_at = models.DateTimeField("created", auto_now_add=True)
    delivered_at = models.DateTimeField("delivered", null=True, blank=True)

    class Meta:
        verbose_name = "outbox message"
        # The only indexes besides the primary key and the idempotency key (audit 0010 says why the plain
        # `status` btree went: most rows are delivered, and the retention purge reads those by id).
        indexes = [
            # The dispatcher's claim (audit.outbox._claim): due pending rows, oldest first. Also what
            # reconciliation's "a run is already pending for this system?" check walks (pending rows only).
            models.Index(
                fields=["next_attempt_at", "id"],
                name="audit_outbox_due_idx",
                condition=models.Q(status="pending"),
            ),
            # The admin's list filtered to dead messages (status=dead, newest first, and its count): the
            # few waiting for a person, found without reading the delivered ones. Inserts never touch it.
            models.Index(fields=["id"], name="audit_outbox_dead_idx", condition=models.Q(status="dead")),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"
