import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_auditor_signs_in_and_finds_their_own_login_in_the_audit_trail(page, login, make_user):
    # given
    make_user("ada", roles=("auditor",))
    # when
    login("ada")
    # then
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    page.get_by_label("Action").select_option("user.logged_in")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr").first).to_contain_text("ada")


def test_requester_sees_no_audit_link_and_is_refused_the_page(page, login, make_user):
    make_user("rick", roles=("requester",))
    login("rick")
    expect(page.get_by_role("link", name="Audit trail")).to_have_count(0)
    response = page.goto("/audit/")
    assert response.status == 403


def test_wrong_password_shows_the_error_beside_the_form(page, login, make_user):
    make_user("rick")
    login("rick", "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
