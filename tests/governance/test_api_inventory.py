from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from governance.choices import GrantStatus, IdentityStatus
from governance.models import Finding, Identity
from tests.api import API, api
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
)
from tests.factories.governance import with_role as role

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return role(PersonFactory(name="Olu"), "owner")


@pytest.fixture
def bot(owner):
    return MachineFactory(name="deploy-bot", owner=owner)


@pytest.fixture
def admin():
    return role(PersonFactory(name="Sam"), "admin")


def test_owner_lists_retrieves_and_patches_their_identity(owner, bot):
    client = api(owner.user)
    listed = client.get(f"{API}/identities/").json()
    assert bot.pk in [row["id"] for row in listed["results"]]
    assert client.get(f"{API}/identities/{bot.pk}/").json()["owner_name"] == "Olu"
    response = client.patch(f"{API}/identities/{bot.pk}/", {"team": "Payments"}, format="json")
    assert response.status_code == 200 and response.json()["team"] == "Payments"
    event = AuditEvent.objects.get(action="identity.updated")
    assert event.channel == "api" and event.data["after"] == {"team": "Payments"}


def test_a_requester_cannot_see_patch_or_offboard_someone_elses_identity(bot):
    stranger = role(PersonFactory(), "requester")
    client = api(stranger.user)
    assert client.get(f"{API}/identities/{bot.pk}/").status_code == 404
    assert client.patch(f"{API}/identities/{bot.pk}/", {"team": "x"}, format="json").status_code == 404
    assert client.post(f"{API}/identities/{bot.pk}/offboard/", {"reason": "x"}, format="json").status_code == 404
    assert [row["id"] for row in client.get(f"{API}/identities/").json()["results"]] == [stranger.pk]


def test_the_identity_list_joins_each_identitys_owner_alone(admin, owner, bot):
    # given a backed-up, managed API key beside a service account
    key = MachineFactory(name="ci-key", kind="api_key", owner=owner, backup_owner=admin, manager=admin)
    client = api(admin.user)
    client.get(f"{API}/identities/")  # warm the user's cached roles
    # when the API lists the API keys
    with CaptureQueriesContext(connection) as ctx:
        (listed,) = client.get(f"{API}/identities/", {"kind": "api_key"}).json()["results"]
    # then the owner is named, the backup owner and manager given by id
    assert (listed["id"], listed["owner_name"], listed["backup_owner"], listed["manager"]) == (
        key.pk,
        "Olu",
        admin.pk,
        admin.pk,
    )
    # from one join, the owner's: not three people built as model instances for each identity
    (rows,) = [query["sql"] for query in ctx.captured_queries if '"governance_identity"."external_id"' in query["sql"]]
    assert rows.count(" JOIN ") == 1, rows


@pytest.mark.parametrize(("resource", "table"), [("grants", "governance_grant"), ("findings", "governance_finding")])
def test_grant_and_finding_lists_read_their_own_rows_without_joins(admin, owner, bot, resource, table):
    # given a grant of the machine and a finding about it
    grant = GrantFactory(identity=bot)
    Finding.objects.create(
        key="stale-bot",
        kind="stale",
        identity=bot,
        owner_to_act=owner,
        first_seen_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    client = api(admin.user)
    # when the API lists them
    with CaptureQueriesContext(connection) as ctx:
        (listed,) = client.get(f"{API}/{resource}/").json()["results"]
    # then related objects go out as ids, read off the row itself: no table joined to build them
    assert listed["identity"] == bot.pk and (resource != "grants" or listed["entitlement"] == grant.entitlement_id)
    (rows,) = [query["sql"] for query in ctx.captured_queries if f'FROM "{table}"' in query["sql"]]
    assert " JOIN " not in rows, rows


def test_an_owner_of_other_things_may_read_but_not_change(bot):
    other = role(PersonFactory(), "owner")
    client = api(other.user)
    events = AuditEvent.objects.count()
    assert client.get(f"{API}/identities/{bot.pk}/").status_code == 200
    assert client.patch(f"{API}/identities/{bot.pk}/", {"team": "x"}, format="json").status_code == 403
    assert AuditEvent.objects.count() == events


def test_bad_input_is_400_with_field_errors_and_writes_nothing(owner):
    client = api(owner.user)
    response = client.post(f"{API}/identities/", {"name": "orphan-key", "kind": "api_key"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"owner": ["Required for non-human identities."]}
    response = client.post(f"{API}/identities/", {"name": "x", "kind": "robot", "owner": owner.pk}, format="json")
    assert response.status_code == 400 and "kind" in response.json()["errors"]
    assert not Identity.objects.filter(name__in=["orphan-key", "x"]).exists()


def test_owner_registers_a_machine_identity(owner):
    response = api(owner.user).post(
        f"{API}/identities/", {"name": "etl-agent", "kind": "ai_agent", "owner": owner.pk}, format="json"
    )
    assert response.status_code == 201 and response.json()["owner"] == owner.pk


def test_offboard_twice_is_a_conflict(owner, bot):
    client = api(owner.user)
    assert client.post(f"{API}/identities/{bot.pk}/offboard/", {"reason": "gone"}, format="json").status_code == 200
    assert client.post(f"{API}/identities/{bot.pk}/offboard/", {"reason": "gone"}, format="json").status_code == 409
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.OFFBOARDED


def test_admin_creates_system_and_entitlement_and_grants_it(admin, owner, bot):
    client = api(admin.user)
    system = client.post(f"{API}/systems/", {"name": "Vault", "owner": owner.pk, "criticality": "high"}, format="json")
    assert system.status_code == 201, system.json()
    entitlement = client.post(
        f"{API}/entitlements/",
        {
            "system": system.json()["id"],
            "name": "vault-admin",
            "owner": owner.pk,
            "risk_tier": "high",
            "approval_stages": [{"approver": "system_owner", "quorum": 1}],
        },
        format="json",
    )
    assert entitlement.status_code == 201, entitlement.json()
    assert entitlement.json()["max_duration_seconds"] == 24 * 3600
    grant = client.post(
        f"{API}/grants/",
        {"identity": bot.pk, "entitlement": entitlement.json()["id"], "kind": "standing"},
        format="json",
    )
    assert grant.status_code == 201 and grant.json()["status"] == "pending_provision"
    confirmed = api(owner.user).post(f"{API}/grants/{grant.json()['id']}/confirm-provisioned/", {}, format="json")
    assert confirmed.status_code == 200 and confirmed.json()["in_force"] is True


def test_grants_past_expiry_are_not_in_force_before_the_sweep(owner, bot):
    grant = GrantFactory(identity=bot, kind="jit", expires_at=timezone.now() - timedelta(seconds=5))
    body = api(owner.user).get(f"{API}/grants/{grant.pk}/").json()
    assert body["status"] == GrantStatus.ACTIVE and body["in_force"] is False and body["time_left_seconds"] == 0
    in_force = api(owner.user).get(f"{API}/grants/", {"in_force": "true"}).json()["results"]
    assert grant.pk not in [g["id"] for g in in_force]


def test_holder_releases_a_grant(owner, bot):
    grant = GrantFactory(identity=bot, kind="jit", expires_at=timezone.now() + timedelta(hours=1))
    response = api(owner.user).post(f"{API}/grants/{grant.pk}/release/", {"reason": "done"}, format="json")
    assert response.status_code == 200 and response.json()["end_reason"] == "released"


@pytest.mark.parametrize(
    ("resource", "parameter"),
    [("grants", "identity"), ("grants", "entitlement"), ("findings", "identity"), ("findings", "owner_to_act")],
)
def test_filters_do_not_tell_whether_a_hidden_record_exists(bot, resource, parameter):
    from governance.models import Finding

    # given a requester, and someone else's machine with a grant and a finding
    grant = GrantFactory(identity=bot)
    now = timezone.now()
    Finding.objects.create(
        kind="stale", key=f"stale:{bot.pk}", identity=bot, owner_to_act=bot.owner, first_seen_at=now, last_seen_at=now
    )
    stranger = role(PersonFactory(), "requester")
    client = api(stranger.user)
    hidden = {"identity": bot.pk, "entitlement": grant.entitlement_id, "owner_to_act": bot.owner_id}[parameter]

    # when they filter by the hidden record's id, and by an id nobody has
    existing = client.get(f"{API}/{resource}/?{parameter}={hidden}")
    missing = client.get(f"{API}/{resource}/?{parameter}=99999999")

    # then both answers are the same: nothing to show
    assert existing.status_code == missing.status_code == 200, (existing.json(), missing.json())
    assert existing.json()["results"] == missing.json()["results"] == []


def test_filters_still_find_what_the_caller_sees(owner, bot):
    grant = GrantFactory(identity=bot)
    GrantFactory()
    rows = api(owner.user).get(f"{API}/grants/?identity={bot.pk}").json()["results"]
    assert [row["id"] for row in rows] == [grant.pk]


@pytest.mark.parametrize("resource", ["identities", "systems", "entitlements", "grants", "findings"])
def test_list_endpoints_have_a_constant_query_count(admin, owner, resource):
    from governance.models import Finding

    def add_rows(n):
        for i in range(n):
            grant = GrantFactory(
                identity=MachineFactory(owner=owner), entitlement=EntitlementFactory(system=SystemFactory())
            )
            Finding.objects.create(
                key=f"k{grant.pk}-{i}",
                kind="stale",
                identity=grant.identity,
                owner_to_act=owner,
                first_seen_at=timezone.now(),
                last_seen_at=timezone.now(),
            )

    client = api(admin.user)
    client.get(f"{API}/{resource}/")  # warm the user's cached roles
    add_rows(1)
    with CaptureQueriesContext(connection) as one:
        assert client.get(f"{API}/{resource}/").status_code == 200
    add_rows(20)
    with CaptureQueriesContext(connection) as many:
        assert client.get(f"{API}/{resource}/").status_code == 200
    assert len(many.captured_queries) == len(one.captured_queries), resource


def test_schema_and_docs(admin):
    client = api(admin.user)
    assert client.get(f"{API}/schema/").status_code == 200
    docs = client.get(f"{API}/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_openapi_schema_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--api-version", "v1", "--file", str(tmp_path / "s.yaml")
    )
    schema = (tmp_path / "s.yaml").read_text()
    assert "/api/v1/requests/{id}/approve/" in schema and "/api/v1/identities/" in schema


@pytest.mark.parametrize("path", ["identities", "systems", "entitlements", "grants", "findings", "requests"])
def test_anonymous_callers_are_refused(path):
    response = APIClient().get(f"{API}/{path}/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="api"'
