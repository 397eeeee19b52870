"""The expiry sweep's events say exactly when each grant expired, batch after batch (issue 17, item 3).

On PostgreSQL the sweep reads each expiry as microseconds since the epoch (Django's timestamptz
loader costs a second per 100,000 grants); the trail must not be able to tell.
"""

from datetime import UTC, datetime, timedelta

import pytest

from audit.models import AuditEvent, OutboxMessage
from audit.services import data_json
from audit.verify import verify_chain
from governance.choices import GrantStatus
from governance.models import Grant
from governance.services.grants import grant_confirm_revoked
from jit.services.expiry import grants_expire_due
from tests.factories.governance import GrantFactory

pytestmark = pytest.mark.django_db

EXPIRIES = [
    datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),  # microseconds
    datetime(2026, 3, 1, 9, 30, 15, tzinfo=UTC),  # a whole second
    datetime(2026, 3, 1, 9, 30, 15, 500, tzinfo=UTC),  # microseconds but no milliseconds
]


def test_each_event_carries_its_grants_expiry_to_the_microsecond():
    grants = [
        GrantFactory(kind="jit", expires_at=expiry, granted_at=expiry - timedelta(hours=1)) for expiry in EXPIRIES
    ]

    assert grants_expire_due(now=datetime(2026, 3, 2, tzinfo=UTC)) == len(grants)

    for grant in grants:
        event = AuditEvent.objects.get(action="grant.expiring", target_id=str(grant.pk))
        written = {"identity": grant.identity_id, "entitlement": grant.entitlement_id, "expires_at": grant.expires_at}
        assert data_json(event.data) == data_json(written)
    assert verify_chain().ok


def test_batches_that_end_among_equal_expiries_go_on_where_the_last_one_stopped():
    expiry = datetime(2026, 3, 1, 9, 30, 15, 250000, tzinfo=UTC)
    grants = [
        GrantFactory(
            kind="jit", expires_at=expiry + timedelta(microseconds=i // 3), granted_at=expiry - timedelta(hours=1)
        )
        for i in range(7)
    ]

    assert grants_expire_due(now=datetime(2026, 3, 2, tzinfo=UTC), batch_size=2) == 7

    assert set(Grant.objects.filter(status=GrantStatus.REVOKING).values_list("pk", flat=True)) == {g.pk for g in grants}
    assert AuditEvent.objects.filter(action="grant.expiring").count() == 7


def test_a_grant_that_expired_before_1970_is_swept_and_removed_like_any_other():
    # The batches walk expiries from a cursor: it starts before every expiry, not at the epoch.
    expiry = datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC)
    old = GrantFactory(kind="jit", expires_at=expiry, granted_at=expiry - timedelta(hours=1))
    recent = GrantFactory(kind="jit", expires_at=EXPIRIES[0], granted_at=EXPIRIES[0] - timedelta(hours=1))

    assert grants_expire_due(now=datetime(2026, 3, 2, tzinfo=UTC), batch_size=1) == 2

    old.refresh_from_db()
    assert (old.status, old.end_reason) == (GrantStatus.REVOKING, "expired")
    assert Grant.objects.get(pk=recent.pk).status == GrantStatus.REVOKING
    event = AuditEvent.objects.get(action="grant.expiring", target_id=str(old.pk))
    written = {"identity": old.identity_id, "entitlement": old.entitlement_id, "expires_at": expiry}
    assert data_json(event.data) == data_json(written)  # negative microseconds since the epoch, read back exactly
    message = OutboxMessage.objects.get(kind="connector.revoke", payload__grant_id=old.pk)
    assert message.idempotency_key == f"grant:{old.pk}:expired"

    grant_confirm_revoked(grant_id=old.pk, actor=None)  # the target removed it
    assert Grant.objects.get(pk=old.pk).status == GrantStatus.EXPIRED
    assert verify_chain().ok
