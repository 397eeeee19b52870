"""The pages work under the Content-Security-Policy (`default-src 'self'`, no inline script or style):
the browser reports no violation on any main page, the admin or the API docs, and the confirmation
before cancelling a request (an inline handler once) still asks."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from governance.choices import RiskTier
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ALL_ROLES = ["admin", "requester", "approver", "owner", "auditor"]

# Every violation the page sees is also written to the console, where the test collects it.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def violations(page):
    seen: list[str] = []
    page.add_init_script(REPORT_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            seen.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text or "CSP violation" in message.text
            else None
        ),
    )
    return seen


@pytest.fixture
def pending_request(make_user):
    user = make_user("ada", roles=ALL_ROLES, is_staff=True, is_superuser=True)
    admin = PersonFactory(name="Ada Admin", user=user)
    entitlement = EntitlementFactory(
        name="db-write", risk_tier=RiskTier.MEDIUM, system=SystemFactory(name="Payments DB")
    )
    return access_request_submit(
        actor=admin.user, beneficiary_id=admin.pk, entitlement_id=entitlement.pk, justification="Quarterly fix"
    )


def test_main_pages_the_admin_and_the_api_docs_report_no_violation(page, login, violations, pending_request):
    page.goto("/login/")
    login("ada")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    for link in nav.get_by_role("link").all_text_contents():
        nav.get_by_role("link", name=link.strip(), exact=True).click()
        page.wait_for_load_state("networkidle")
        if "/admin/" not in page.url:  # the Django admin is a page of its own
            # htmx runs, and injected no <style> of its own
            assert page.evaluate("typeof htmx") == "object", page.url
            assert page.locator("style").count() == 0, page.url
    user_id = pending_request.requester_id
    for path in (
        reverse("jit:request_detail", args=[pending_request.pk]),
        reverse("governance:login_detail", args=[user_id]),
        "/admin/audit/auditevent/",
        "/admin/audit/outboxmessage/",
        "/api/v1/docs/",
    ):
        response = page.goto(path)
        assert "default-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
    expect(page.locator(".swagger-ui")).to_contain_text("Access portal API")
    assert violations == []


def test_cancelling_a_request_asks_first_and_a_no_keeps_it(page, login, violations, pending_request):
    login("ada")
    page.goto(reverse("jit:request_detail", args=[pending_request.pk]))
    asked: list[str] = []

    def answer(dialog, accept: bool):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Cancel this request").click()
    assert asked == ["Cancel this request? It cannot be reopened."]
    assert AccessRequest.objects.get(pk=pending_request.pk).status == RequestStatus.PENDING

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.get_by_role("button", name="Cancel this request").click()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_text("Cancelled", exact=False).first).to_be_visible()
    assert AccessRequest.objects.get(pk=pending_request.pk).status == RequestStatus.CANCELLED
    assert violations == []
