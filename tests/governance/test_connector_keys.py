"""One helper writes the idempotency key of every ask of a grant's connector.

The outbox keeps one message per key and matches new asks against rows already queued, and the webhook
connector sends the same key to the target: the keys' shape is pinned here, as every path writes it.
"""

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import OutboxMessage
from governance.choices import GrantStatus
from governance.connectors import connector_key
from governance.connectors.webhook import grant_idempotency_key
from governance.models import Grant
from governance.services.grants import (
    REVOKE,
    grant_retry_revoke,
    grant_revoke,
    grants_retry_failed_revocations,
    grants_revoke_many,
)
from tests.factories.governance import GrantFactory

pytestmark = pytest.mark.django_db


def test_the_key_names_the_grant_the_ask_and_the_attempt():
    assert connector_key(42, "connector.revoke", 3) == "grant:42:connector.revoke:3"
    assert connector_key(42, "connector.provision", 1) == "grant:42:connector.provision:1"
    assert connector_key(42, "revoke:offboarded", "0123456789ab") == "grant:42:revoke:offboarded:0123456789ab"
    assert connector_key(42, "expired") == "grant:42:expired"  # asked once: no attempt
    assert connector_key(42, "connector.revoke", 0) == "grant:42:connector.revoke:0"  # a zero is an attempt


class _Undone(Exception):
    pass


def _key_of(ask) -> str:
    """The key `ask` gives its connector call, with everything it did undone (the grant asked as it was)."""
    try:
        with transaction.atomic():
            ask()
            raise _Undone(OutboxMessage.objects.filter(kind=REVOKE).latest("pk").idempotency_key)
    except _Undone as undone:
        return undone.args[0]


def test_a_failed_removal_asked_again_by_hand_or_by_the_sweep_gets_the_same_key(settings):
    settings.REVOKE_FAILED_RETRY_MINUTES = 30
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="left")
    first = OutboxMessage.objects.get(kind=REVOKE).idempotency_key
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.REVOKE_FAILED, updated_at=timezone.now() - timedelta(minutes=45)
    )
    asked = Grant.history.filter(id=grant.pk).count()  # the retry adds one more history row

    by_hand = _key_of(lambda: grant_retry_revoke(grant_id=grant.pk, actor=None))
    by_sweep = _key_of(grants_retry_failed_revocations)

    assert first == f"grant:{grant.pk}:connector.revoke:{asked}"
    assert by_hand == by_sweep == f"grant:{grant.pk}:connector.revoke:{asked + 1}"
    grants_retry_failed_revocations()
    grant.refresh_from_db()
    assert grant_idempotency_key(grant, "revoke") == by_sweep  # what the webhook target is sent


def test_a_bulk_revocation_keys_each_grant_by_its_end_reason_and_one_token():
    grants = [GrantFactory() for _ in range(3)]
    grants_revoke_many(grant_ids=[g.pk for g in grants], actor=None, reason="left", end_reason="offboarded")
    keys = dict(OutboxMessage.objects.filter(kind=REVOKE).values_list("payload__grant_id", "idempotency_key"))
    tokens = set()
    for grant in grants:
        found = re.fullmatch(rf"grant:{grant.pk}:revoke:offboarded:([0-9a-f]{{12}})", keys[grant.pk])
        assert found, keys[grant.pk]
        tokens.add(found.group(1))
    assert len(tokens) == 1  # one revocation, one ask: told apart from any later one by its token
