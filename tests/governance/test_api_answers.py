"""What the API answers says nothing about records the caller may not see, and names fields as sent."""

import pytest

from governance.choices import IdentityStatus
from governance.models import Identity
from tests.api import API, api
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


def test_filtering_requests_by_someone_elses_identity_answers_as_for_an_unknown_one():
    alice, stranger = PersonFactory(), PersonFactory()
    hidden = MachineFactory(owner=stranger)
    client = api(alice.user)

    theirs = client.get(f"{API}/requests/", {"beneficiary": hidden.pk})
    unknown = client.get(f"{API}/requests/", {"beneficiary": 99_999_999})

    assert theirs.status_code == unknown.status_code == 200
    assert theirs.json()["results"] == unknown.json()["results"] == []


def test_naming_a_hidden_person_who_left_is_the_same_answer_as_an_unknown_id():
    alice = with_role(PersonFactory(), "owner")
    gone = PersonFactory(name="Secret Bob", status=IdentityStatus.OFFBOARDED)
    client = api(alice.user)

    def create(backup_owner):
        return client.post(
            f"{API}/identities/",
            {"kind": "service_account", "name": "etl", "owner": alice.pk, "backup_owner": backup_owner},
            format="json",
        )

    left, unknown, machine = create(gone.pk), create(99_999_999), create(MachineFactory().pk)
    assert left.status_code == unknown.status_code == machine.status_code == 400
    assert left.json() == unknown.json() == machine.json()
    assert left.json()["errors"] == {"backup_owner": ["Must be an active person."]}
    assert "Secret Bob" not in left.content.decode()
    assert not Identity.objects.filter(name="etl").exists()


def test_handing_my_machine_to_a_colleague_says_it_was_done():
    alice, bob = PersonFactory(), PersonFactory()
    bot = MachineFactory(owner=alice)

    response = api(alice.user).patch(f"{API}/identities/{bot.pk}/", {"owner": bob.pk}, format="json")

    assert response.status_code == 200 and response.json()["id"] == bot.pk
    bot.refresh_from_db()
    assert bot.owner == bob


def test_a_services_duration_error_is_named_as_the_api_field_it_came_from(admin_user):
    bot = MachineFactory()
    entitlement = EntitlementFactory()

    response = api(admin_user).post(
        f"{API}/grants/", {"identity": bot.pk, "entitlement": entitlement.pk, "kind": "jit"}, format="json"
    )

    assert response.status_code == 400
    assert "duration_seconds" in response.json()["errors"] and "duration" not in response.json()["errors"]


def test_the_api_schema_and_its_docs_are_for_signed_in_callers(requester):
    from rest_framework.test import APIClient

    assert APIClient().get(f"{API}/schema/").status_code == 401
    client = api(requester)
    schema = client.get(f"{API}/schema/")
    assert schema.status_code == 200 and b"/api/v1/requests/" in schema.content
    assert client.get(f"{API}/docs/").status_code == 200


def test_naming_a_hidden_identity_as_an_owner_or_grantee_is_the_same_answer_as_an_unknown_id():
    alice = PersonFactory()
    hidden = MachineFactory(owner=PersonFactory())
    entitlement = EntitlementFactory()
    client = api(alice.user)

    def answers(path, field, payload):
        return [
            (r.status_code, r.json())
            for r in (
                client.post(f"{API}/{path}/", {**payload, field: pk}, format="json") for pk in (hidden.pk, 99_999_999)
            )
        ]

    system = answers("systems", "owner", {"name": "Billing", "criticality": "low"})
    grant = answers("grants", "identity", {"entitlement": entitlement.pk, "kind": "standing"})
    assert system[0] == system[1] and system[0][0] == 400
    assert grant[0] == grant[1] and grant[0][0] == 400
