"""The details people meet when they edit and search: clashes named beside the field, a form sent back
unchanged changes nothing, durations kept exact, ended grants without time left, honest empty states,
a bad audit filter exports nothing, people found by their names, and an auditor who only reads."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from governance.choices import GrantKind, GrantStatus
from governance.models import Entitlement
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
    with_role,
)

pytestmark = pytest.mark.django_db


def entitlement_form_data(e, **overrides):
    data = {
        "name": e.name,
        "owner": e.owner.user.username,
        "business_purpose": e.business_purpose,
        "risk_tier": e.risk_tier,
        "requestable": "on",
        "review_cadence_days": e.review_cadence_days,
        "approval_stages": '[{"approver": "entitlement_owner", "quorum": 1}]',
        "allowed_identity_kinds": ["human", "service_account"],
        "max_duration_hours": "",
    }
    data.update(overrides)
    return data


def test_entitlement_rename_clash_is_a_field_error_not_a_500(client):
    owner = with_role(PersonFactory(), "owner")
    system = SystemFactory(owner=owner)
    a = EntitlementFactory(system=system, owner=owner, name="admin")
    b = EntitlementFactory(system=system, owner=owner, name="reader")
    client.force_login(owner.user)
    client.raise_request_exception = False
    response = client.post(reverse("governance:entitlement_edit", args=[b.pk]), entitlement_form_data(b, name=a.name))
    assert response.status_code == 400
    assert "name" in response.context["form"].errors


def test_api_entitlement_create_duplicate_name_is_400(client):
    owner = with_role(PersonFactory(), "owner")
    system = SystemFactory(owner=owner)
    EntitlementFactory(system=system, owner=owner, name="admin")
    client.force_login(owner.user)
    client.raise_request_exception = False
    response = client.post(
        "/api/v1/entitlements/",
        {"system": system.pk, "name": "admin", "owner": owner.pk},
        content_type="application/json",
    )
    assert response.status_code == 400


def test_system_rename_clash_names_the_field(client):
    owner = with_role(PersonFactory(), "owner")
    SystemFactory(name="Payments")
    mine = SystemFactory(name="Billing", owner=owner)
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:system_edit", args=[mine.pk]),
        {"name": "Payments", "description": "", "owner": owner.user.username, "criticality": "medium"},
    )
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    assert "governance_system_unique_live_name" not in response.content.decode()


def test_identity_edit_submitted_unchanged_changes_nothing(client):
    owner = with_role(PersonFactory(), "owner")
    bot = MachineFactory(
        owner=owner, last_used_at=timezone.now().replace(second=35), last_rotated_at=timezone.now().replace(second=17)
    )
    client.force_login(owner.user)
    form = client.get(reverse("governance:identity_edit", args=[bot.pk])).context["form"]
    data = {}
    for field in form:
        value = field.value()
        if value is None:
            continue
        data[field.html_name] = (
            field.field.widget.format_value(value)
            if hasattr(field.field.widget, "format_value") and field.name.endswith("_at")
            else value
        )
    before = AuditEvent.objects.count()
    response = client.post(reverse("governance:identity_edit", args=[bot.pk]), data)
    assert response.status_code == 302
    bot_after = type(bot).objects.get(pk=bot.pk)
    assert bot_after.last_used_at == bot.last_used_at
    assert AuditEvent.objects.count() == before


def test_entitlement_edit_keeps_fractional_max_duration(client):
    owner = with_role(PersonFactory(), "owner")
    e = EntitlementFactory(owner=owner, max_duration=timedelta(minutes=90))
    client.force_login(owner.user)
    form = client.get(reverse("governance:entitlement_edit", args=[e.pk])).context["form"]
    shown = form["max_duration_hours"].value()
    response = client.post(
        reverse("governance:entitlement_edit", args=[e.pk]),
        entitlement_form_data(e, max_duration_hours=shown, business_purpose="edited"),
    )
    assert response.status_code == 302
    assert Entitlement.objects.get(pk=e.pk).max_duration == timedelta(minutes=90)


def test_revoked_grant_shows_no_time_left(client):
    admin = with_role(PersonFactory(), "admin")
    grant = GrantFactory(
        kind=GrantKind.JIT,
        status=GrantStatus.REVOKED,
        revoked_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=5),
    )
    client.force_login(admin.user)
    page = client.get(reverse("governance:grant_detail", args=[grant.pk])).content.decode()
    assert "expires in" not in page
    detail = client.get(reverse("governance:identity_detail", args=[grant.identity_id])).content.decode()
    assert "4 h 59 min" not in detail


def test_my_identities_filtered_empty_state(client):
    owner = with_role(PersonFactory(), "owner")
    MachineFactory(owner=owner, name="billing-bot")
    client.force_login(owner.user)
    page = client.get(reverse("governance:my_identities"), {"q": "zzz"}).content.decode()
    assert "You own no identities yet" not in page


def test_audit_export_refuses_invalid_filters(client):
    auditor = with_role(PersonFactory(), "auditor")
    client.force_login(auditor.user)
    response = client.get(reverse("audit:event_export"), {"since": "2026-13-45"})
    assert response.status_code == 400


def test_audit_search_by_person_name(client):
    auditor = with_role(PersonFactory(), "auditor")
    owner = with_role(PersonFactory(name="Olu Owner"), "owner")
    bot = MachineFactory(owner=owner)
    client.force_login(owner.user)
    client.post(reverse("governance:identity_suspend", args=[bot.pk]), {"reason": "test"})
    client.force_login(auditor.user)
    response = client.get(reverse("audit:event_list"), {"actor": "Olu"})
    assert any(e.action == "identity.suspended" for e in response.context["page_obj"].object_list)


def test_an_auditor_registers_no_identities_by_page_or_api(client):
    auditor = PersonFactory(user__roles=["auditor"])
    client.force_login(auditor.user)
    assert client.get(reverse("governance:identity_create")).status_code == 403
    response = client.post(
        "/api/v1/identities/",
        {"kind": "service_account", "name": "svc-by-auditor", "owner": auditor.pk},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert not type(auditor).objects.filter(name="svc-by-auditor").exists()


def test_a_group_of_choices_is_a_fieldset_with_a_legend(client):
    owner = with_role(PersonFactory(), "owner")
    entitlement = EntitlementFactory(owner=owner)
    client.force_login(owner.user)
    page = client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).content.decode()
    assert "<legend>Identity kinds allowed" in page
    assert '<label for="">' not in page
