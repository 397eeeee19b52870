"""Free text in the inventory is bounded alike on the pages, in the API, in imports and in the database.
Ref: #11 (point 7)."""

import json

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.models import AuditEvent
from audit.services import Actor
from governance.choices import GrantStatus, IdentityStatus
from governance.models import Entitlement, Grant, Identity, SodRule, System
from governance.services.imports import ImportRejected, import_apply
from tests.api import API, api
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

AT_LIMIT = "x" * FREE_TEXT_MAX_LENGTH
OVER_LIMIT = "x" * (FREE_TEXT_MAX_LENGTH + 1)
ONE_MB = "x" * 1024 * 1024
TOO_LONG_MESSAGE = f"{FREE_TEXT_MAX_LENGTH} characters"


#
# Pages
#
def test_an_over_long_identity_description_on_the_edit_page_is_a_field_error(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:identity_edit", args=[bot.pk]),
        {"name": bot.name, "description": ONE_MB, "credential_type": "static_secret", "secret_location": "ci_cd"},
    )
    assert TOO_LONG_MESSAGE in str(response.context["form"].errors["description"])
    bot.refresh_from_db()
    assert bot.description == "" and not AuditEvent.objects.filter(action="identity.updated").exists()


def test_an_over_long_business_purpose_on_the_entitlement_page_is_a_field_error(client, owner):
    entitlement = EntitlementFactory(owner=owner)
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {
            "name": entitlement.name,
            "owner": owner.user.username,
            "business_purpose": OVER_LIMIT,
            "risk_tier": "low",
            "review_cadence_days": 90,
            "approval_stages": '[{"approver": "entitlement_owner", "quorum": 1}]',
            "allowed_identity_kinds": ["human"],
        },
    )
    assert TOO_LONG_MESSAGE in str(response.context["form"].errors["business_purpose"])
    entitlement.refresh_from_db()
    assert entitlement.business_purpose == "Operate the service"


def test_an_over_long_sod_rule_description_is_a_field_error(client, admin_user):
    pair = [EntitlementFactory().pk, EntitlementFactory().pk]
    client.force_login(admin_user)
    response = client.post(
        reverse("governance:sod_rule_create"),
        {"name": "Pair", "entitlements": pair, "severity": "high", "action": "block", "description": OVER_LIMIT},
    )
    assert TOO_LONG_MESSAGE in str(response.context["form"].errors["description"])
    assert not SodRule.objects.exists()


def test_revoking_with_an_over_long_reason_shows_the_error_beside_the_field_and_revokes_nothing(client, admin_user):
    # given
    grant = GrantFactory()
    client.force_login(admin_user)
    # when
    response = client.post(reverse("governance:grant_revoke", args=[grant.pk]), {"reason": OVER_LIMIT})
    # then
    assert response.status_code == 400
    assert TOO_LONG_MESSAGE in str(response.context["reason_form"].errors["reason"])
    assert 'id="id_reason_error"' in response.content.decode()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    assert not AuditEvent.objects.filter(action__startswith="grant.revok").exists()


def test_revoking_with_a_reason_of_exactly_the_limit_is_done(client, admin_user):
    grant = GrantFactory()
    client.force_login(admin_user)
    response = client.post(reverse("governance:grant_revoke", args=[grant.pk]), {"reason": AT_LIMIT})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.status != GrantStatus.ACTIVE


def test_suspending_with_an_over_long_reason_says_why_and_suspends_nothing(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(reverse("governance:identity_suspend", args=[bot.pk]), {"reason": OVER_LIMIT}, follow=True)
    assert TOO_LONG_MESSAGE in response.content.decode()
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.ACTIVE


#
# API
#
def test_an_over_long_identity_description_through_the_api_is_400_naming_the_field(owner, bot):
    response = api(owner.user).patch(f"{API}/identities/{bot.pk}/", {"description": ONE_MB}, format="json")
    assert response.status_code == 400
    assert TOO_LONG_MESSAGE in str(response.json()["errors"]["description"])
    assert Identity.objects.get(pk=bot.pk).description == ""


def test_an_identity_description_of_exactly_the_limit_is_accepted_through_the_api(owner, bot):
    response = api(owner.user).patch(f"{API}/identities/{bot.pk}/", {"description": AT_LIMIT}, format="json")
    assert response.status_code == 200, response.json()
    assert Identity.objects.get(pk=bot.pk).description == AT_LIMIT


def test_an_over_long_system_description_through_the_api_is_400_and_nothing_is_created(admin_user):
    owner = PersonFactory()
    response = api(admin_user).post(
        f"{API}/systems/", {"name": "Ledger", "owner": owner.pk, "description": OVER_LIMIT}, format="json"
    )
    assert response.status_code == 400 and "description" in response.json()["errors"]
    assert not System.objects.filter(name="Ledger").exists()


def test_revoking_through_the_api_with_an_over_long_reason_is_400(admin_user):
    grant = GrantFactory()
    response = api(admin_user).post(f"{API}/grants/{grant.pk}/revoke/", {"reason": ONE_MB}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE


#
# Imports
#
def run(entity: str, text: str, fmt: str = "csv"):
    return import_apply(actor=Actor.system(), entity=entity, fmt=fmt, content=text.encode(), file_name=f"f.{fmt}")


def test_an_over_long_cell_is_a_row_error_and_nothing_is_imported():
    PersonFactory(external_id="p-1")
    text = f"external_id,name,description,owner_external_id\nsys-1,Ledger,{OVER_LIMIT},p-1\n"
    with pytest.raises(ImportRejected) as caught:
        run("systems", text)
    assert [(e.line, e.message) for e in caught.value.row_errors] == [
        (2, f"description is longer than {FREE_TEXT_MAX_LENGTH} characters")
    ]
    assert not System.objects.exists()


def test_a_megabyte_business_purpose_in_a_json_file_is_a_row_error():
    system = SystemFactory(external_id="sys-1", owner=PersonFactory(external_id="p-1"))
    row = {"external_id": "ent-1", "system_external_id": "sys-1", "name": "read", "owner_external_id": "p-1"}
    text = json.dumps([{**row, "business_purpose": ONE_MB}])
    with pytest.raises(ImportRejected) as caught:
        run("entitlements", text, fmt="json")
    assert [(e.line, e.message) for e in caught.value.row_errors] == [
        (1, f"business_purpose is longer than {FREE_TEXT_MAX_LENGTH} characters")
    ]
    assert not Entitlement.objects.filter(system=system).exists()


def test_a_cell_of_exactly_the_limit_is_imported():
    PersonFactory(external_id="p-1")
    run("systems", f"external_id,name,description,owner_external_id\nsys-1,Ledger,{AT_LIMIT},p-1\n")
    assert System.objects.get(external_id="sys-1").description == AT_LIMIT


#
# The database refuses too
#
@pytest.mark.parametrize(
    ("model", "field", "make"),
    [
        (Identity, "description", PersonFactory),
        (System, "description", SystemFactory),
        (Entitlement, "business_purpose", EntitlementFactory),
        (Grant, "reason", GrantFactory),
    ],
)
def test_the_database_refuses_over_long_free_text(model, field, make):
    row = make()
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=row.pk).update(**{field: OVER_LIMIT})
