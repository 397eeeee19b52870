"""Every page people work in passes axe-core's WCAG 2.1 A/AA rules in a real browser.

axe-core comes from the axe-playwright-python package (pinned in the lock file); the pages are
those of the demo organisation, with its requests, grants and findings, seen by each role.
"""

import pytest
from django.core.management import call_command

from jit.models import AccessRequest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}

PAGES = {
    "requester": [
        "/",
        "/access/request/",
        "/access/request/{entitlement}/",
        "/access/requests/",
        "/access/requests/{request}/",
        "/access/grants/",
        "/access/notifications/",
        "/inventory/mine/",
        "/inventory/catalogue/",
    ],
    "owner": [
        "/access/approvals/",
        "/inventory/identities/",
        "/inventory/identities/{machine}/",
        "/inventory/identities/{machine}/owner/",
        "/inventory/findings/",
        "/inventory/systems/",
    ],
    "auditor": ["/audit/"],
    "admin": ["/inventory/import/", "/inventory/sod-rules/", "/inventory/systems/new/"],
}


def test_the_pages_of_every_role_have_no_accessibility_violations(page, login):
    from axe_playwright_python.sync_playwright import Axe

    # given the demo organisation
    call_command("seed_demo", verbosity=0)
    request = AccessRequest.objects.filter(requester__username="requester").order_by("pk").first()
    machine = request.entitlement.owner.owned_identities.exclude(kind="human").order_by("pk").first()
    slots = {"entitlement": request.entitlement_id, "request": request.pk, "machine": machine.pk}
    axe, found = Axe(), {}

    # when each role opens its pages
    for user, paths in PAGES.items():
        page.context.clear_cookies()
        login(user, "portal-demo")
        for template in paths:
            path = template.format(**slots)
            assert page.goto(path).status == 200, path
            violations = axe.run(page, options=WCAG_AA).response["violations"]
            if violations:
                found[path] = [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}" for v in violations]

    # then none breaks a rule
    assert not found, found
