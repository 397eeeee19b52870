"""Person fields pick from a live search by name, login or email (issue 16, owner item 3)."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import IdentityStatus
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db

SEARCH = "governance:people_search"


def search(client, **params):
    return client.get(reverse(SEARCH), params, HTTP_HX_REQUEST="true")


def test_finds_people_by_name_login_or_email_and_not_machines_or_leavers(client, owner, bot):
    # given people matching in each field, a leaver and a machine
    PersonFactory(name="Grace Hopper", email="ghopper@example.org", user__username="amazing-grace")
    PersonFactory(name="Grace Left", status=IdentityStatus.OFFBOARDED)
    client.force_login(owner.user)

    # when each way of naming her is typed
    by_name, by_login, by_email = (search(client, q=q) for q in ("grace h", "amazing", "ghopper@"))

    # then she is found each time, with her login to pick; the leaver and the machine never are
    for response in (by_name, by_login, by_email):
        assert response.status_code == 200
        html = response.content.decode()
        assert 'data-value="amazing-grace"' in html and "Grace Hopper" in html
        assert "Grace Left" not in html
    assert "billing-bot" not in search(client, q="billing").content.decode()


def test_the_field_value_htmx_sends_is_searched_and_option_ids_follow_the_listbox(client, owner):
    PersonFactory(name="Bea Backup", user__username="bea")
    client.force_login(owner.user)

    response = search(client, field="backup_owner", backup_owner="bea", listbox="id_backup_owner_listbox")

    assert 'id="id_backup_owner_listbox-1"' in response.content.decode()


def test_at_most_ten_people_in_a_constant_number_of_queries(client, owner, count_queries):
    PersonFactory(name="Sam One")
    client.force_login(owner.user)
    one = count_queries(lambda: search(client, q="sam"))

    PersonFactory.create_batch(30, name="Sam Many")
    many = count_queries(lambda: search(client, q="sam"))

    assert one == many
    assert search(client, q="sam").content.decode().count('role="option"') == 10


def test_best_match_first_and_nobody_found_is_said(client, owner):
    PersonFactory.create_batch(3, name="Ann Annex")
    exact = PersonFactory(name="Ann", user__username="ann")
    client.force_login(owner.user)

    html = search(client, q="ann").content.decode()
    assert html.index('data-value="ann"') < html.index("Ann Annex")
    assert "No active person matches “zzqq”." in search(client, q="zzqq").content.decode()
    assert exact.user.username == "ann"


def test_a_delegate_search_lists_only_people_who_sign_in(client, owner):
    PersonFactory(name="Nolan Login", user=None)
    client.force_login(owner.user)

    assert "Nolan Login" in search(client, q="nolan").content.decode()
    assert "Nolan Login" not in search(client, q="nolan", signs_in="1").content.decode()


@pytest.mark.parametrize(
    "params, status, says",
    [
        ({"q": "x" * 101}, 400, "Type at most 100 characters."),
        ({"q": "a"}, 200, ""),  # too short to search: an empty list, not everyone
        ({"q": "  "}, 200, ""),
        ({"field": "nonsense"}, 200, ""),
        ({"q": "ann", "listbox": "<script>"}, 200, ""),
    ],
)
def test_bad_input_is_answered_plainly(client, owner, params, status, says):
    PersonFactory(name="Ann")
    client.force_login(owner.user)

    response = search(client, **params)

    assert response.status_code == status
    html = response.content.decode()
    assert says in html and "<script>" not in html
    if params.get("q", "").strip() in ("a", ""):
        assert 'role="option"' not in html


def test_auditors_and_strangers_without_an_identity_may_not_search(client, django_user_model):
    ada = PersonFactory(name="Ada Auditor", user__roles=["auditor"])
    client.force_login(ada.user)
    assert search(client, q="ada").status_code == 403

    nobody = django_user_model.objects.create_user("no-identity", password="x")
    client.force_login(nobody)
    assert search(client, q="ada").status_code == 403

    client.logout()
    assert search(client, q="ada").status_code == 302


def test_person_fields_render_an_accessible_combobox(client, owner, bot):
    client.force_login(owner.user)

    html = client.get(reverse("governance:identity_owner", args=[bot.pk])).content.decode()

    assert 'role="combobox"' in html and 'aria-controls="id_backup_owner_listbox"' in html
    assert 'aria-autocomplete="list"' in html and 'aria-expanded="false"' in html
    assert 'id="id_backup_owner_listbox" class="picker-options"' in html
    assert reverse(SEARCH) in html
    # the delegate field on the identity's page too, limited to people who sign in
    detail = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    assert 'aria-controls="id_delegate_listbox"' in detail and "signs_in" in detail


def test_the_form_takes_the_person_picked(client, owner, bot):
    # given the search offers Bea, picking her puts her login in the field
    bea = PersonFactory(name="Bea Backup", user__username="bea-b")
    client.force_login(owner.user)
    picked = search(client, q="Bea Back").content.decode()
    assert 'data-value="bea-b"' in picked

    # when the form is sent with the picked value
    response = client.post(
        reverse("governance:identity_owner", args=[bot.pk]),
        {"owner": owner.user.username, "backup_owner": "bea-b", "reason": "cover"},
    )

    # then she is the backup owner, audited
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.backup_owner_id == bea.pk
    assert AuditEvent.objects.filter(action="identity.owner_changed").exists()
