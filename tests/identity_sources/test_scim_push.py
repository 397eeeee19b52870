"""A scripted identity-provider push (issue 18): create, move, deactivate, as Okta or Entra ID sends
them, then what an admin sees in the inventory and an auditor in the audit trail; and a leaver's
access gone within one sweep interval.
"""

import json

import pytest
import time_machine
from django.conf import settings
from django.urls import reverse

from audit.models import AuditEvent, OutboxMessage
from audit.outbox import outbox_dispatch
from governance.choices import GrantKind, GrantStatus, IdentityStatus
from governance.models import Grant
from identity_sources.models_scim import ScimUser
from identity_sources.scim.services import scim_source_create
from tests.factories.governance import GrantFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def push(client, token: str, method: str, path: str, body: dict) -> dict:
    response = getattr(client, method)(
        f"/scim/v2/{path}",
        data=json.dumps(body),
        content_type="application/scim+json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def test_a_joiner_a_mover_and_a_leaver_show_in_the_inventory_and_the_audit_trail(client):
    # given a provider connected with its token, and an admin and an auditor watching
    _source, token = scim_source_create(actor=None, name="okta")
    admin = with_role(PersonFactory(), "admin")
    auditor = with_role(PersonFactory(user__roles=[]), "auditor")
    manager = push(
        client,
        token,
        "post",
        "Users",
        {"schemas": [USER], "userName": "grace@example.org", "displayName": "Grace Hopper"},
    )

    # when the provider pushes a joiner (Okta's create)
    joiner = push(
        client,
        token,
        "post",
        "Users",
        {
            "schemas": [USER, ENTERPRISE],
            "userName": "joan@example.org",
            "name": {"givenName": "Joan", "familyName": "Clarke"},
            "emails": [{"value": "joan@example.org", "primary": True, "type": "work"}],
            "title": "Analyst",
            "active": True,
            ENTERPRISE: {"department": "Codebreaking"},
        },
    )
    # a mover (Entra ID's PATCH: new department and manager)
    push(
        client,
        token,
        "patch",
        f"Users/{joiner['id']}",
        {
            "schemas": [PATCH],
            "Operations": [
                {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Hut 8"},
                {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]},
            ],
        },
    )
    # and a leaver (Okta's deactivation: a PUT of the whole user with active false)
    leaver = push(
        client,
        token,
        "post",
        "Users",
        {"schemas": [USER], "userName": "alan@example.org", "displayName": "Alan Turing"},
    )
    grant = GrantFactory(identity=ScimUser.objects.get(scim_id=leaver["id"]).identity)
    push(
        client,
        token,
        "put",
        f"Users/{leaver['id']}",
        {"schemas": [USER], "userName": "alan@example.org", "displayName": "Alan Turing", "active": False},
    )

    # then the inventory shows the three as the provider described them
    client.force_login(admin.user)
    page = client.get(reverse("governance:identity_list"), {"q": "Joan"}).content.decode()
    assert "Joan Clarke" in page and "Hut 8" in page
    joan = ScimUser.objects.get(scim_id=joiner["id"]).identity
    detail = client.get(reverse("governance:identity_detail", args=[joan.pk])).content.decode()
    assert "Grace Hopper" in detail  # her manager now
    alan = ScimUser.objects.get(scim_id=leaver["id"]).identity
    assert alan.status == IdentityStatus.OFFBOARDED
    assert "Offboarded" in client.get(reverse("governance:identity_detail", args=[alan.pk])).content.decode()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING

    # and the audit trail shows joiner, mover and leaver, from the provider, over SCIM
    client.force_login(auditor.user)
    trail = client.get(reverse("audit:event_list"), {"channel": "scim"})
    assert trail.status_code == 200
    seen = {(item.event.action, item.event.target_id) for item in trail.context["events"]}
    assert {
        ("identity.created", str(joan.pk)),
        ("identity.moved", str(joan.pk)),
        ("identity.created", str(alan.pk)),
        ("identity.offboarded", str(alan.pk)),
        ("grant.revoke_requested", str(grant.pk)),
    } <= seen
    assert {item.event.actor_label for item in trail.context["events"]} == {"SCIM source okta"}
    assert "SCIM source okta" in trail.content.decode()


def test_a_leaver_loses_their_grants_within_one_sweep_interval(client):
    # given a person the provider manages, with standing and just-in-time access
    _source, token = scim_source_create(actor=None, name="entra")
    person = push(client, token, "post", "Users", {"schemas": [USER], "userName": "kim@example.org"})
    identity = ScimUser.objects.get(scim_id=person["id"]).identity
    standing = GrantFactory(identity=identity)
    jit = GrantFactory(identity=identity, kind=GrantKind.JIT)
    assert Grant.objects.in_force().filter(identity=identity).count() == 2

    with time_machine.travel(standing.granted_at + settings.EXPIRY_SWEEP_INTERVAL * 60, tick=False) as clock:
        # when the provider deactivates them
        push(
            client,
            token,
            "patch",
            f"Users/{person['id']}",
            {
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": "active", "value": "False"}],
            },  # Entra's string
        )
        # then nothing they held is in force from that moment (pages, API and policy read it so)
        assert not Grant.objects.in_force().filter(identity=identity).exists()
        asks = OutboxMessage.objects.filter(kind="connector.revoke", payload__grant_id__in=[standing.pk, jit.pk])
        assert asks.count() == 2  # each target's removal queued in the same transaction

        # and within one sweep interval the dispatcher has asked every target to remove it
        clock.shift(settings.EXPIRY_SWEEP_INTERVAL)
        outbox_dispatch()
        assert set(asks.values_list("status", flat=True)) == {"delivered"}
        # the manual connector's owner confirms, as for any revocation; the grant is then revoked
        from governance.services.grants import grant_confirm_revoked

        grant_confirm_revoked(grant_id=standing.pk, actor=standing.entitlement.system.owner.user)
        standing.refresh_from_db()
        assert standing.status == GrantStatus.REVOKED and standing.end_reason == "offboarded"
        assert AuditEvent.objects.filter(action="identity.offboarded", channel="scim").count() == 1
