"""Input the database cannot store is refused up front, and the health endpoint tells strangers only pass/fail."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import audit_event_record
from governance.choices import GrantStatus
from governance.models import Grant
from tests.factories.governance import GrantFactory, PersonFactory

pytestmark = pytest.mark.django_db


def test_a_nul_character_in_a_form_field_is_a_clear_400_and_changes_nothing(client):
    holder = PersonFactory()
    grant = GrantFactory(identity=holder)
    client.force_login(holder.user)
    response = client.post(reverse("governance:grant_revoke", args=[grant.pk]), {"reason": "a\x00b"})
    assert response.status_code == 400 and b"NUL" in response.content
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE
    assert not AuditEvent.objects.filter(action="grant.revoke_requested").exists()


def test_a_nul_character_in_a_query_string_is_a_clear_400(client, auditor):
    client.force_login(auditor)
    assert client.get(reverse("audit:event_export"), {"actor": "x\x00"}).status_code == 400


def test_the_audit_trail_stores_a_nul_that_reached_it_as_a_replacement_character():
    event = audit_event_record(actor=None, action="outbox.dead", data={"error": "bad\x00byte", "list": ["\x00"]})
    event.refresh_from_db()
    assert event.data == {"error": "bad\ufffdbyte", "list": ["\ufffd"]}


def test_health_tells_strangers_pass_or_fail_and_staff_why(client, admin_user):
    anonymous = client.get("/health/").json()["checks"]
    assert all(set(check) == {"ok"} for check in anonymous.values())
    client.force_login(admin_user)
    assert all("detail" in check for check in client.get("/health/").json()["checks"].values())
