import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import GrantStatus, IdentityStatus
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db


def with_role(identity, role: str):
    identity.user.groups.add(Group.objects.get(name=role))
    return identity


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olu Owner"), "owner")


@pytest.fixture
def bot(owner):
    return MachineFactory(name="billing-bot", owner=owner)


@pytest.fixture
def stranger():
    return with_role(PersonFactory(name="Rick Requester"), "requester")


@pytest.mark.parametrize("url_name", ["identity_list", "my_identities", "system_list", "entitlement_list"])
def test_list_pages_render_with_constant_queries(client, owner, count_queries, url_name):
    client.force_login(owner.user)
    grant = GrantFactory(identity=MachineFactory(owner=owner))
    one = count_queries(lambda: client.get(reverse(f"governance:{url_name}")))
    for _ in range(20):
        GrantFactory(
            identity=MachineFactory(owner=owner), entitlement=EntitlementFactory(system=grant.entitlement.system)
        )
    assert count_queries(lambda: client.get(reverse(f"governance:{url_name}"))) == one


def test_identity_list_filters_sorts_and_searches(client, owner, bot):
    MachineFactory(name="zeta-key", kind="api_key", owner=owner)
    client.force_login(owner.user)
    response = client.get(reverse("governance:identity_list"), {"kind": "api_key"})
    assert [i.name for i in response.context["page_obj"]] == ["zeta-key"]
    response = client.get(reverse("governance:identity_list"), {"q": "billing", "sort": "-name"})
    assert [i.name for i in response.context["page_obj"]] == ["billing-bot"]
    response = client.get(reverse("governance:identity_list"), {"q": "nothing-like-this"})
    assert b"No identity matches" in response.content


def test_detail_pages_render(client, owner, bot):
    grant = GrantFactory(identity=bot, kind="jit")
    client.force_login(owner.user)
    for url in [
        reverse("governance:identity_detail", args=[bot.pk]),
        reverse("governance:system_detail", args=[grant.entitlement.system_id]),
        reverse("governance:entitlement_detail", args=[grant.entitlement_id]),
        reverse("governance:grant_detail", args=[grant.pk]),
    ]:
        assert client.get(url).status_code == 200, url
    body = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    assert "left" in body or "min" in body  # time left shown for the JIT grant


def test_requester_cannot_see_the_whole_inventory_or_others_identities(client, stranger, bot):
    client.force_login(stranger.user)
    assert client.get(reverse("governance:identity_list")).status_code == 403
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 404
    assert client.get(reverse("governance:identity_edit", args=[bot.pk])).status_code == 404
    response = client.post(reverse("governance:identity_offboard", args=[bot.pk]), {"reason": "mine now"})
    assert response.status_code == 404
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.ACTIVE


def test_an_owner_of_something_else_cannot_edit_this_identity(client, bot):
    other_owner = with_role(PersonFactory(), "owner")  # reads the inventory, owns nothing here
    client.force_login(other_owner.user)
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 200
    assert client.post(reverse("governance:identity_edit", args=[bot.pk]), {"name": "x"}).status_code == 403
    assert client.post(reverse("governance:identity_offboard", args=[bot.pk]), {"reason": "x"}).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="identity.").exists()


def test_owner_edits_and_offboards_their_machine_identity(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:identity_edit", args=[bot.pk]),
        {
            "name": "billing-bot",
            "team": "Payments",
            "credential_type": "static_secret",
            "secret_location": "secrets_manager",
            "rotation_period_days": "30",
        },
        follow=True,
    )
    assert response.status_code == 200 and b"updated" in response.content
    grant = GrantFactory(identity=bot)
    page = client.get(reverse("governance:identity_offboard", args=[bot.pk]))
    assert grant.entitlement.name in page.content.decode()
    response = client.post(reverse("governance:identity_offboard", args=[bot.pk]), {"reason": "replaced"}, follow=True)
    assert b"offboarded" in response.content
    bot.refresh_from_db()
    grant.refresh_from_db()
    assert bot.status == IdentityStatus.OFFBOARDED and grant.status == GrantStatus.REVOKING
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"identity.updated", "identity.offboarded"}


def test_bad_input_shows_the_error_beside_the_field_and_writes_nothing(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(reverse("governance:identity_owner", args=[bot.pk]), {"owner": "", "reason": "x"})
    assert response.status_code == 200
    assert response.context["form"].errors["owner"] == ["Required for non-human identities."]
    bot.refresh_from_db()
    assert bot.owner == owner
    assert not AuditEvent.objects.filter(action="identity.owner_changed").exists()


def test_entitlement_edit_rejects_bad_json_beside_the_field(client, owner):
    entitlement = EntitlementFactory(owner=owner)
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {
            "name": entitlement.name,
            "owner": owner.pk,
            "risk_tier": "low",
            "review_cadence_days": 90,
            "approval_stages": "[{oops",
            "allowed_identity_kinds": ["human"],
        },
    )
    assert "Not valid JSON" in str(response.context["form"].errors["approval_stages"])


def test_system_owner_confirms_a_pending_grant_on_its_page(client):
    system_owner = PersonFactory()
    grant = GrantFactory(
        status=GrantStatus.PENDING_PROVISION,
        granted_at=None,
        entitlement=EntitlementFactory(system=SystemFactory(owner=system_owner)),
    )
    client.force_login(system_owner.user)
    response = client.post(reverse("governance:grant_step", args=[grant.pk, "confirm-granted"]), follow=True)
    assert b"the grant is active" in response.content
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    # someone else cannot
    other = GrantFactory(status=GrantStatus.PENDING_PROVISION, granted_at=None)
    client.force_login(with_role(PersonFactory(), "owner").user)
    assert client.post(reverse("governance:grant_step", args=[other.pk, "confirm-granted"])).status_code == 403
