"""Admins register SCIM sources, replace and revoke their tokens in the browser; the token is shown once."""

import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from identity_sources.models_scim import ScimSource
from identity_sources.scim.services import scim_source_create

pytestmark = pytest.mark.django_db

PAGE = reverse("identity_sources:scim_sources")
ADD = reverse("identity_sources:scim_source_add")


def token_on(page) -> str:
    return re.search(r'value="(scim_[^"]+)"', page.content.decode()).group(1)


def scim_users(client, token):
    return client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return client


def test_an_admin_adds_a_source_and_its_token_works_at_once(admin):
    answer = admin.post(ADD, {"name": "okta"})

    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    assert "shown this once" in answer.content.decode()
    token = token_on(answer)
    assert scim_users(admin, token).status_code == 200
    listed = admin.get(PAGE).content.decode()
    assert "okta" in listed and token not in listed  # the list shows the prefix, never the token
    assert AuditEvent.objects.filter(action="scim.source_created", actor_label="admin1").exists()


def test_a_replaced_token_stops_working_and_the_new_one_works(admin):
    source, old = scim_source_create(actor=None, name="entra")

    answer = admin.post(reverse("identity_sources:scim_source_rotate", args=[source.pk]))

    new = token_on(answer)
    assert scim_users(admin, old).status_code == 401
    assert scim_users(admin, new).status_code == 200
    assert "the old one no longer works" in answer.content.decode()


def test_a_revoked_source_is_refused_and_shown_revoked(admin):
    source, token = scim_source_create(actor=None, name="okta")

    answer = admin.post(reverse("identity_sources:scim_source_revoke", args=[source.pk]), follow=True)

    assert "okta revoked" in answer.content.decode() and "Replace token" not in answer.content.decode()
    assert scim_users(admin, token).status_code == 401
    again = admin.post(reverse("identity_sources:scim_source_rotate", args=[source.pk]), follow=True)
    assert "is revoked" in again.content.decode()


@pytest.mark.parametrize("name", ["", "Okta Prod!", "x" * 51])
def test_a_bad_name_is_refused_beside_its_field_and_nothing_is_made(admin, name):
    answer = admin.post(ADD, {"name": name})

    assert answer.status_code == 400
    page = answer.content.decode()
    assert 'id="id_name_error"' in page and 'aria-invalid="true"' in page
    assert not ScimSource.objects.exists()


def test_a_taken_name_is_refused(admin):
    scim_source_create(actor=None, name="okta")
    answer = admin.post(ADD, {"name": "okta"})
    assert answer.status_code == 400 and "already a SCIM source" in answer.content.decode()
    assert ScimSource.objects.count() == 1


@pytest.mark.parametrize("role", ["requester", "approver", "owner", "auditor"])
def test_only_admins_see_or_change_sources(client, make_user, role):
    source, token = scim_source_create(actor=None, name="okta")
    client.force_login(make_user(f"{role}9", roles=(role,)))

    assert client.get(PAGE).status_code == 403
    assert client.post(ADD, {"name": "mine"}).status_code == 403
    assert client.post(reverse("identity_sources:scim_source_rotate", args=[source.pk])).status_code == 403
    assert client.post(reverse("identity_sources:scim_source_revoke", args=[source.pk])).status_code == 403
    assert scim_users(client, token).status_code == 200  # untouched
    assert list(ScimSource.objects.values_list("name", flat=True)) == ["okta"]


def test_the_list_costs_the_same_queries_for_one_source_or_ten(admin, django_assert_max_num_queries):
    scim_source_create(actor=None, name="s0")
    with django_assert_max_num_queries(12) as one:
        admin.get(PAGE)
    for n in range(1, 10):
        scim_source_create(actor=None, name=f"s{n}")
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert admin.get(PAGE).content.decode().count("Replace token") == 10


def test_the_empty_page_says_what_to_do(admin):
    assert "No SCIM source yet" in admin.get(PAGE).content.decode()


@pytest.mark.parametrize("role", ["requester", "approver", "owner", "auditor"])
def test_the_services_refuse_a_non_admin_on_their_own_and_write_nothing(make_user, role):
    """The page checks first; the services refuse too, whoever calls them."""
    from governance.errors import PermissionRefused
    from identity_sources.scim.services import scim_source_revoke, scim_source_rotate

    source, _token = scim_source_create(actor=None, name="okta")  # the system (manage.py scim_source)
    someone = make_user(f"{role}9", roles=(role,))
    before = set(AuditEvent.objects.values_list("pk", flat=True))

    with pytest.raises(PermissionRefused, match="Only admins"):
        scim_source_create(actor=someone, name="mine")
    with pytest.raises(PermissionRefused, match="Only admins"):
        scim_source_rotate(actor=someone, source_id=source.pk)
    with pytest.raises(PermissionRefused, match="Only admins"):
        scim_source_revoke(actor=someone, source_id=source.pk)

    assert list(ScimSource.objects.values_list("name", "prefix", "revoked_at")) == [("okta", source.prefix, None)]
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == before


def test_the_command_line_still_manages_sources_as_the_system():
    from io import StringIO

    from django.core.management import call_command

    call_command("scim_source", "create", "okta", stdout=StringIO())
    call_command("scim_source", "rotate", "okta", stdout=StringIO())
    call_command("scim_source", "revoke", "okta", stdout=StringIO())

    assert ScimSource.objects.get(name="okta").revoked_at is not None
    assert list(
        AuditEvent.objects.filter(action__startswith="scim.").order_by("seq").values_list("action", "actor_type")
    ) == [("scim.source_created", "system"), ("scim.token_rotated", "system"), ("scim.source_revoked", "system")]
