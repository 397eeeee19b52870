"""The catalogue in the browser: risk and criticality sort by rank, and the pages that add a system
(admins) and an entitlement (admins and the system's owner) through the catalogue services."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import LifecycleStatus, RiskTier
from governance.models import Entitlement, System
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory, with_role

pytestmark = pytest.mark.django_db

LOW_TO_CRITICAL = ["low", "medium", "high", "critical"]


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin")


@pytest.fixture
def system_owner():
    return with_role(PersonFactory(name="Sol Owner"), "owner")


@pytest.fixture
def system(system_owner):
    return SystemFactory(name="Ledger", owner=system_owner)


def entitlement_data(person, **overrides):
    data = {
        "name": "ledger-admin",
        "owner": person.user.username,
        "business_purpose": "Close the books",
        "risk_tier": "high",
        "requestable": "on",
        "justification_required": "on",
        "review_cadence_days": "90",
        "approval_stages": '[{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner"}]',
        "allowed_identity_kinds": ["human", "service_account"],
        "max_duration_hours": "8",
    }
    data.update(overrides)
    return data


#
# Sorting by rank
#
@pytest.mark.parametrize(
    ("factory", "field", "page", "sort"),
    [
        (EntitlementFactory, "risk_tier", "governance:entitlement_list", "risk"),
        (SystemFactory, "criticality", "governance:system_list", "criticality"),
    ],
    ids=["catalogue by risk", "systems by criticality"],
)
def test_tiers_sort_from_low_to_critical(client, admin, factory, field, page, sort):
    for tier in ["critical", "high", "low", "medium"]:
        factory(**{field: tier})
    client.force_login(admin.user)

    def tiers(order):
        rows = client.get(reverse(page), {"sort": order}).context["page_obj"]
        return [getattr(row, field) for row in rows]

    assert tiers(sort) == LOW_TO_CRITICAL
    assert tiers(f"-{sort}") == LOW_TO_CRITICAL[::-1]


#
# New system
#
def test_an_admin_adds_a_system_from_the_system_list(client, admin, system_owner):
    client.force_login(admin.user)
    listing = client.get(reverse("governance:system_list")).content.decode()
    assert reverse("governance:system_create") in listing
    assert client.get(reverse("governance:system_create")).status_code == 200

    response = client.post(
        reverse("governance:system_create"),
        {"name": "Payroll", "description": "Pays people", "owner": system_owner.email, "criticality": "critical"},
        follow=True,
    )

    system = System.objects.get(name="Payroll")
    assert response.redirect_chain[-1][0] == reverse("governance:system_detail", args=[system.pk])
    assert "Payroll added" in response.content.decode()
    assert (system.owner, system.criticality, system.description) == (system_owner, "critical", "Pays people")
    event = AuditEvent.objects.get(action="system.created")
    assert event.target_id == str(system.pk) and event.actor_user_id == admin.user.pk


@pytest.mark.parametrize("role", ["requester", "owner"])
def test_only_admins_add_a_system(client, role):
    someone = with_role(PersonFactory(), role)
    client.force_login(someone.user)
    if role == "owner":  # reads the systems, but is offered no "New system"
        assert reverse("governance:system_create") not in client.get(reverse("governance:system_list")).content.decode()
    assert client.get(reverse("governance:system_create")).status_code == 403
    response = client.post(
        reverse("governance:system_create"), {"name": "Shadow IT", "owner": someone.user.username, "criticality": "low"}
    )
    assert response.status_code == 403
    assert not System.objects.filter(name="Shadow IT").exists()
    assert not AuditEvent.objects.filter(action="system.created").exists()


def test_a_bad_new_system_is_shown_beside_its_fields_and_nothing_is_written(client, admin, system):
    client.force_login(admin.user)

    response = client.post(
        reverse("governance:system_create"), {"name": "", "owner": "nobody-here", "criticality": "extreme"}
    )
    clash = client.post(
        reverse("governance:system_create"), {"name": "Ledger", "owner": admin.user.username, "criticality": "low"}
    )

    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"name", "owner", "criticality"}
    assert response.context["form"].errors["owner"] == ["No active person with that login, email or name."]
    assert 'id="id_owner_error"' in response.content.decode()
    assert clash.status_code == 400 and "name" in clash.context["form"].errors
    assert list(System.objects.all()) == [system]
    assert not AuditEvent.objects.filter(action="system.created").exists()


#
# New entitlement
#
def test_a_system_owner_adds_an_entitlement_to_their_system(client, system, system_owner):
    client.force_login(system_owner.user)
    detail = client.get(reverse("governance:system_detail", args=[system.pk])).content.decode()
    create_url = reverse("governance:entitlement_create", args=[system.pk])
    assert create_url in detail
    form = client.get(create_url).context["form"]
    assert form["approval_stages"].value() == '[{"approver": "entitlement_owner", "quorum": 1}]'

    response = client.post(create_url, entitlement_data(system_owner), follow=True)

    entitlement = Entitlement.objects.get(system=system, name="ledger-admin")
    assert response.redirect_chain[-1][0] == reverse("governance:entitlement_detail", args=[entitlement.pk])
    assert "ledger-admin added to the catalogue" in response.content.decode()
    assert entitlement.owner == system_owner and entitlement.risk_tier == RiskTier.HIGH
    assert len(entitlement.approval_stages) == 2 and entitlement.allowed_identity_kinds == ["human", "service_account"]
    assert entitlement.max_duration.total_seconds() == 8 * 3600
    event = AuditEvent.objects.get(action="entitlement.created")
    assert event.target_id == str(entitlement.pk) and event.actor_user_id == system_owner.user.pk


def test_an_admin_adds_an_entitlement_to_any_system(client, admin, system, system_owner):
    client.force_login(admin.user)
    response = client.post(reverse("governance:entitlement_create", args=[system.pk]), entitlement_data(system_owner))
    assert response.status_code == 302
    assert Entitlement.objects.filter(system=system, name="ledger-admin").exists()


def test_others_cannot_add_an_entitlement_and_nothing_is_written(client, system):
    url = reverse("governance:entitlement_create", args=[system.pk])
    # a requester may not even see the system: the page does not exist for them
    requester = with_role(PersonFactory(), "requester")
    client.force_login(requester.user)
    assert client.get(url).status_code == 404
    assert client.post(url, entitlement_data(requester)).status_code == 404
    # an owner of other things reads the system but may not add to it
    reader = with_role(PersonFactory(), "owner")
    client.force_login(reader.user)
    assert client.get(url).status_code == 403
    assert client.post(url, entitlement_data(reader)).status_code == 403
    assert (
        reverse("governance:entitlement_create", args=[system.pk])
        not in client.get(reverse("governance:system_detail", args=[system.pk])).content.decode()
    )
    assert not Entitlement.objects.exists()
    assert not AuditEvent.objects.filter(action="entitlement.created").exists()


def test_a_bad_new_entitlement_is_shown_beside_its_fields_and_nothing_is_written(client, system, system_owner):
    client.force_login(system_owner.user)
    url = reverse("governance:entitlement_create", args=[system.pk])

    response = client.post(url, entitlement_data(system_owner, name="", owner="nobody-here", approval_stages="[{oops"))
    refused = client.post(url, entitlement_data(system_owner, approval_stages='[{"approver": "the_moon"}]'))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"name", "owner", "approval_stages"}
    assert "Not valid JSON" in errors["approval_stages"][0]
    assert refused.status_code == 400 and "unknown approver" in str(refused.context["form"].errors["approval_stages"])
    assert not Entitlement.objects.exists()
    assert not AuditEvent.objects.filter(action="entitlement.created").exists()


def test_a_retired_system_takes_no_new_entitlement(client, admin, system, system_owner):
    System.objects.filter(pk=system.pk).update(status=LifecycleStatus.RETIRED)
    client.force_login(admin.user)

    response = client.post(
        reverse("governance:entitlement_create", args=[system.pk]), entitlement_data(system_owner), follow=True
    )

    assert response.redirect_chain[-1][0] == reverse("governance:system_detail", args=[system.pk])
    assert "takes no new entitlements" in response.content.decode()
    assert not Entitlement.objects.exists()
