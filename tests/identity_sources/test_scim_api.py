"""SCIM 2.0 provisioning (issue 18, items 2-4): joiners, movers, leavers pushed by a source.

Through the real endpoint (`/scim/v2/`) with a real SCIM source token: what the inventory, the
certification queue and the audit trail show afterwards, and who may call what.
"""

import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import GrantStatus, IdentityKind, IdentityStatus
from governance.models import Campaign, Grant, Identity, ReviewItem
from governance.models.certification import CampaignKind
from governance.services.credentials import api_token_create
from identity_sources.models_scim import ScimGroup, ScimUser
from identity_sources.scim.services import scim_source_create, scim_source_revoke
from tests.factories.governance import GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

SCIM = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def source():
    source, secret = scim_source_create(actor=None, name="okta")
    source.secret = secret
    return source


@pytest.fixture
def idp(client, source):
    """A client that speaks SCIM with the source's token."""

    class Idp:
        def __init__(self, token):
            self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

        def call(self, method, path, body=None, **params):
            url = "/scim/v2/" + path
            kwargs = dict(self.headers)
            if body is not None:
                kwargs.update(data=json.dumps(body), content_type=SCIM)
            elif params:
                kwargs["data"] = params
            return getattr(client, method)(url, **kwargs)

    return Idp(source.secret)


def person(user_name, *, team="", manager=None, title="", active=True, given="Ada", family="Lovelace"):
    document = {
        "schemas": [USER, ENTERPRISE],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": f"{user_name}@example.org", "type": "work", "primary": True}],
        "title": title,
        "active": active,
        ENTERPRISE: {"department": team},
    }
    if manager:
        document[ENTERPRISE]["manager"] = {"value": manager}
    return document


def actions_for(identity) -> list[str]:
    return list(AuditEvent.objects.for_target(identity).order_by("seq").values_list("action", flat=True))


#
# Joiners
#
def test_a_new_scim_user_is_a_joiner_a_human_identity_holding_nothing(idp):
    # when the provider pushes a new person
    response = idp.call("post", "Users", person("ada", team="Payments", title="Engineer"))
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["userName"] == "ada" and body["active"] is True and body[ENTERPRISE]["department"] == "Payments"
    assert response["Location"].endswith(f"/scim/v2/Users/{body['id']}")
    identity = ScimUser.objects.get(scim_id=body["id"]).identity
    assert identity.kind == IdentityKind.HUMAN and identity.status == IdentityStatus.ACTIVE
    assert (identity.name, identity.team, identity.email) == ("Ada Lovelace", "Payments", "ada@example.org")
    assert not identity.grants.exists()  # a source never grants access
    created = AuditEvent.objects.get(action="identity.created", target_id=str(identity.pk))
    assert created.channel == "scim" and created.actor_label == "SCIM source okta" and created.actor_type == "system"


def test_a_taken_user_name_is_a_conflict_and_nothing_is_written(idp):
    idp.call("post", "Users", person("ada"))
    response = idp.call("post", "Users", person("ADA"))
    assert response.status_code == 409 and response.json()["scimType"] == "uniqueness"
    assert Identity.objects.filter(kind=IdentityKind.HUMAN).count() == 1


def test_bad_input_is_a_scim_400_and_nothing_is_written(idp):
    response = idp.call("post", "Users", {"schemas": [USER], "userName": ""})
    assert response.status_code == 400 and response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    response = idp.call("post", "Users", person("bob", manager="no-such-person"))
    assert response.status_code == 400
    assert not Identity.objects.exists() and not ScimUser.objects.exists()


#
# Movers
#
def test_a_move_updates_the_identity_is_audited_as_a_move_and_opens_an_event_review(idp):
    # given a manager and a person who holds access
    boss = idp.call("post", "Users", person("grace", team="Payments", given="Grace", family="Hopper")).json()
    ada = idp.call("post", "Users", person("ada", team="Payments", title="Engineer")).json()
    identity = ScimUser.objects.get(scim_id=ada["id"]).identity
    grant = GrantFactory(identity=identity)
    # when the provider moves her to another team under a manager
    response = idp.call(
        "patch",
        f"Users/{ada['id']}",
        {
            "schemas": [PATCH],
            "Operations": [
                {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Data"},
                {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": boss["id"]}},
            ],
        },
    )
    # then the identity moved, through the inventory's service
    assert response.status_code == 200, response.content
    assert response.json()[ENTERPRISE]["manager"]["value"] == boss["id"]
    identity.refresh_from_db()
    boss_identity = ScimUser.objects.get(scim_id=boss["id"]).identity
    assert identity.team == "Data" and identity.manager == boss_identity
    # and the trail says it was a move, from the source, over SCIM
    moved = AuditEvent.objects.get(action="identity.moved", target_id=str(identity.pk))
    assert moved.channel == "scim" and moved.actor_label == "SCIM source okta"
    assert moved.data["before"] == {"team": "Payments", "manager": None}
    assert moved.data["after"] == {"team": "Data", "manager": boss_identity.pk}
    # and the access she holds is up for review by her new manager (an event-triggered campaign)
    item = ReviewItem.objects.get(grant=grant)
    assert item.campaign.kind == CampaignKind.EVENT and item.campaign.status == "active"
    assert "moved" in item.campaign.name
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE  # a review, not a revocation


def test_a_title_change_alone_is_a_move_with_its_own_review(idp):
    ada = idp.call("post", "Users", person("ada", team="Payments", title="Engineer")).json()
    identity = ScimUser.objects.get(scim_id=ada["id"]).identity
    grant = GrantFactory(identity=identity)
    response = idp.call(
        "patch",
        f"Users/{ada['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Lead"}]},
    )
    assert response.status_code == 200 and response.json()["title"] == "Lead"
    moved = AuditEvent.objects.get(action="identity.moved")
    assert moved.data == {"before": {"title": "Engineer"}, "after": {"title": "Lead"}}
    assert ReviewItem.objects.get(grant=grant).campaign.kind == CampaignKind.EVENT
    # the same title again is no move and opens nothing more
    idp.call(
        "patch",
        f"Users/{ada['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Lead"}]},
    )
    assert AuditEvent.objects.filter(action="identity.moved").count() == 1 and Campaign.objects.count() == 1


def test_a_change_of_name_only_is_no_move(idp):
    ada = idp.call("post", "Users", person("ada", team="Payments")).json()
    body = person("ada", team="Payments", given="Augusta")
    assert idp.call("put", f"Users/{ada['id']}", body).status_code == 200
    assert not AuditEvent.objects.filter(action="identity.moved").exists()
    assert Identity.objects.get().name == "Augusta Lovelace"


#
# Leavers
#
def _leaver_with_access(idp):
    ada = idp.call("post", "Users", person("ada", team="Payments")).json()
    identity = ScimUser.objects.get(scim_id=ada["id"]).identity
    backup = PersonFactory()
    machine = MachineFactory(owner=identity, backup_owner=backup)
    grant = GrantFactory(identity=identity)
    return ada, identity, machine, backup, grant


def test_active_false_offboards_through_the_offboarding_service(idp):
    ada, identity, machine, backup, grant = _leaver_with_access(idp)
    response = idp.call(
        "patch",
        f"Users/{ada['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert response.status_code == 200 and response.json()["active"] is False
    identity.refresh_from_db()
    machine.refresh_from_db()
    grant.refresh_from_db()
    assert identity.status == IdentityStatus.OFFBOARDED
    assert grant.status in (GrantStatus.REVOKING, GrantStatus.REVOKED)  # no longer in force
    assert not Grant.objects.in_force().filter(identity=identity).exists()
    assert machine.owner == backup  # owned machines go to their backup owner
    offboarded = AuditEvent.objects.get(action="identity.offboarded", target_id=str(identity.pk))
    assert offboarded.channel == "scim" and offboarded.data["grants_revoked"] == [grant.pk]


def test_delete_offboards_and_the_resource_is_gone_but_the_identity_stays(idp):
    ada, identity, _machine, _backup, _grant = _leaver_with_access(idp)
    assert idp.call("delete", f"Users/{ada['id']}").status_code == 204
    assert idp.call("get", f"Users/{ada['id']}").status_code == 404
    identity.refresh_from_db()
    assert identity.status == IdentityStatus.OFFBOARDED
    assert "identity.offboarded" in actions_for(identity)


def test_active_again_after_leaving_is_a_rehire_with_nothing_restored(idp):
    ada, identity, _machine, _backup, _grant = _leaver_with_access(idp)
    idp.call(
        "patch",
        f"Users/{ada['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]},
    )
    response = idp.call(
        "patch",
        f"Users/{ada['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": True}]},
    )
    assert response.status_code == 200 and response.json()["active"] is True
    rehired = ScimUser.objects.get(scim_id=ada["id"]).identity
    assert rehired.pk != identity.pk and rehired.status == IdentityStatus.ACTIVE and not rehired.grants.exists()
    identity.refresh_from_db()
    assert identity.status == IdentityStatus.OFFBOARDED


#
# Reads: filtering, pagination, attributes
#
def test_filter_pagination_and_attributes(idp, django_assert_max_num_queries):
    for n in range(5):
        idp.call("post", "Users", person(f"user{n}", team="Payments" if n % 2 else "Data"))
    found = idp.call("get", "Users", filter='userName eq "user3"').json()
    assert found["totalResults"] == 1 and found["Resources"][0]["userName"] == "user3"
    # userName is caseExact false (RFC 7643 §4.1.1): Okta and Entra ID send it as the person typed it.
    assert idp.call("get", "Users", filter='userName eq "USER3"').json()["totalResults"] == 1
    page = idp.call("get", "Users", startIndex=2, count=2).json()
    assert page["totalResults"] == 5 and page["itemsPerPage"] == 2 and page["startIndex"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["user1", "user2"]
    slim = idp.call("get", "Users", attributes="userName").json()["Resources"][0]
    assert set(slim) == {"id", "schemas", "userName"}
    searched = idp.call(
        "post",
        "Users/.search",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'title eq ""',
            "excludedAttributes": ["emails"],
        },
    ).json()
    assert searched["totalResults"] == 5 and all("emails" not in r for r in searched["Resources"])


def test_listing_costs_the_same_queries_for_two_people_or_twenty_one(idp):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given people with a manager and a group each time
    boss = idp.call("post", "Users", person("boss")).json()
    first = idp.call("post", "Users", person("first", manager=boss["id"])).json()
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}
    idp.call("post", "Groups", {**group, "members": [{"value": first["id"]}]})
    with CaptureQueriesContext(connection) as few:
        assert len(idp.call("get", "Users").json()["Resources"]) == 2
    for n in range(19):
        idp.call("post", "Users", person(f"more{n}", manager=boss["id"]))
    with CaptureQueriesContext(connection) as many:
        assert len(idp.call("get", "Users").json()["Resources"]) == 21
    # then the page costs the same whatever it holds
    assert len(many.captured_queries) == len(few.captured_queries)


#
# Groups: kept, never a grant
#
def test_groups_are_recorded_and_audited_but_grant_nothing(idp):
    ada = idp.call("post", "Users", person("ada")).json()
    response = idp.call(
        "post",
        "Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Admins",
            "members": [{"value": ada["id"]}],
        },
    )
    assert response.status_code == 201
    group = response.json()
    assert group["members"][0]["value"] == ada["id"]
    assert idp.call("get", f"Users/{ada['id']}").json()["groups"][0]["display"] == "Admins"
    removed = idp.call(
        "patch",
        f"Groups/{group['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{ada["id"]}"]'}]},
    )
    assert removed.status_code == 200 and "members" not in removed.json()
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="scim.group").order_by("seq")] == [
        "scim.group_created",
        "scim.group_changed",
    ]
    assert not Grant.objects.exists()
    assert idp.call("delete", f"Groups/{group['id']}").status_code == 204
    assert not ScimGroup.objects.exists()


#
# Who may call what
#
def test_scim_refuses_no_token_a_wrong_one_a_revoked_one_and_a_session(client, source):
    assert client.get("/scim/v2/Users").status_code == 401
    bad = client.get("/scim/v2/Users", HTTP_AUTHORIZATION="Bearer scim_000000000000_nope")
    assert bad.status_code == 401 and bad["WWW-Authenticate"].startswith("Bearer")
    admin = with_role(PersonFactory(), "admin")
    client.force_login(admin.user)
    assert client.get("/scim/v2/Users").status_code == 401  # a signed-in admin's session is no SCIM credential
    client.logout()
    scim_source_revoke(actor=None, source_id=source.pk)
    assert client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {source.secret}").status_code == 401


def test_an_api_token_cannot_call_scim_and_a_scim_token_cannot_call_the_api(client, source):
    # given a person's API token with every scope a person may hold
    admin = with_role(PersonFactory(), "admin")
    issued = api_token_create(
        actor=admin.user, identity_id=admin.pk, name="script", scopes=["inventory:read", "inventory:write"]
    )
    # then it does not reach SCIM
    assert client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {issued.secret}").status_code == 401
    # and the SCIM token reaches no API endpoint
    for name in ("api:identity-list", "api:grant-list"):
        try:
            url = reverse(name, kwargs={"version": "v1"})
        except Exception:
            continue
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {source.secret}").status_code in (401, 403)
    assert client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {source.secret}").status_code in (401, 403, 404)


def test_another_sources_people_are_not_found(client, idp):
    ada = idp.call("post", "Users", person("ada")).json()
    _other, other_secret = scim_source_create(actor=None, name="entra")
    other = {"HTTP_AUTHORIZATION": f"Bearer {other_secret}"}
    assert client.get(f"/scim/v2/Users/{ada['id']}", **other).status_code == 404
    assert client.delete(f"/scim/v2/Users/{ada['id']}", **other).status_code == 404
    assert client.get("/scim/v2/Users", **other).json()["totalResults"] == 0
    assert Identity.objects.get().status == IdentityStatus.ACTIVE


def test_discovery_endpoints_and_unknown_addresses_answer_in_scim(idp):
    config = idp.call("get", "ServiceProviderConfig").json()
    assert config["patch"]["supported"] and config["filter"]["supported"] and not config["bulk"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = idp.call("get", "ResourceTypes").json()
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    schemas = idp.call("get", "Schemas").json()
    user = next(s for s in schemas["Resources"] if s["id"] == USER)
    names = {a["name"] for a in user["attributes"]}
    assert "roles" not in names and "entitlements" not in names and "password" not in names
    missing = idp.call("get", "Nowhere")
    assert missing.status_code == 404 and missing.json()["status"] == "404"


def test_the_command_makes_a_token_shown_once_and_rotating_it_stops_the_old_one(client):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("scim_source", "create", "Workday", stdout=out)
    token = next(line for line in out.getvalue().splitlines() if line.startswith("scim_"))
    assert client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    call_command("scim_source", "rotate", "workday", stdout=StringIO())
    assert client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert [e.action for e in AuditEvent.objects.order_by("seq")] == ["scim.source_created", "scim.token_rotated"]
    assert "digest" not in str(AuditEvent.objects.values_list("data", flat=True)[0])


def test_a_malformed_patch_is_a_400_and_changes_nothing(idp):
    ada = idp.call("post", "Users", person("ada", team="Payments")).json()
    before = AuditEvent.objects.count()
    for operations in (
        [{"op": "replace", "path": "title", "value": "Lead"}, {"op": "explode", "path": "title"}],
        [{"op": "replace", "path": "title", "value": "Lead"}, {"op": "remove"}],
        [{"op": "replace", "path": 'emails[type co "work"].value', "value": "x@example.org"}],
        [{"op": "replace", "path": "active", "value": "maybe"}],
    ):
        response = idp.call("patch", f"Users/{ada['id']}", {"schemas": [PATCH], "Operations": operations})
        assert response.status_code == 400, (operations, response.content)
    assert AuditEvent.objects.count() == before
    assert ScimUser.objects.get().title == ""
