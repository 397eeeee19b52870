"""The mobile pass (issue 16): at 390x844, every page of every role's navigation, and the detail pages
reachable from them, fits the screen (no sideways scrolling: tables scroll inside their own box or
become cards) and passes axe-core's WCAG 2.1 A/AA rules.

The pages are found as a person finds them: the links of the role's navigation (the menu folds them
away on a phone, so they are read from the page), then one object of each kind linked from those
pages (an identity, a request, a grant...). The demo organisation provides the objects.
"""

import re

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROLES = ("requester", "approver", "owner", "auditor", "admin")
PHONE = {"width": 390, "height": 844}
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
# Not pages of the portal's design (Django's admin), downloads, and actions.
SKIP = re.compile(r"^/admin/|/export|\.csv|/download|/logout|/api/|/static/")
DETAIL = re.compile(r"^/[^?#]*/\d+/$")  # an object's own page: /inventory/identities/12/
MAX_DETAILS_PER_ROLE = 12

OVERFLOW = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
# The elements that stick out on the right, outside any box that scrolls or clips: what to fix.
CULPRITS = """() => {
  const width = document.documentElement.clientWidth, found = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.right <= width + 1 || box.width === 0) continue;
    let up = el.parentElement, contained = false;
    while (up && up !== document.body) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(up).overflowX)) { contained = true; break; }
      up = up.parentElement;
    }
    if (!contained) found.push(`${el.tagName.toLowerCase()}.${el.className} (${Math.round(box.right)}px)`);
  }
  return found.slice(0, 5);
}"""


def _kind(path: str) -> str:
    return re.sub(r"\d+", "N", path)


def _links(page, selector: str) -> list[str]:
    hrefs = page.eval_on_selector_all(selector, "links => links.map(link => link.getAttribute('href'))")
    return [href for href in hrefs if href and href.startswith("/") and not SKIP.search(href)]


def test_every_page_of_every_role_fits_a_phone_and_passes_axe(browser, live_server):
    from axe_playwright_python.sync_playwright import Axe

    # given the demo organisation
    call_command("seed_demo", verbosity=0)
    axe = Axe()
    overflowing, violations, failed, checked, axed = {}, {}, {}, [], set()

    for role in ROLES:
        # when each role, on a phone, signs in and opens every page of its navigation
        context = browser.new_context(base_url=live_server.url, viewport=PHONE)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("/login/")
        page.get_by_label("Username").fill(role)
        page.get_by_label("Password").fill("portal-demo")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/")
        # the navigation is folded into the menu, and the menu opens
        menu = page.get_by_role("button", name="Menu")
        assert menu.is_visible() and menu.get_attribute("aria-expanded") == "false"
        assert not page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").is_visible()
        menu.click()
        assert menu.get_attribute("aria-expanded") == "true"
        assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").is_visible()

        pages = list(dict.fromkeys(_links(page, "nav[aria-label='Main'] a")))
        kinds, queue = {_kind(path) for path in pages}, list(pages)
        for path in queue:  # the navigation's pages, then the objects found on them (appended as found)
            response = page.goto(path, wait_until="domcontentloaded")
            checked.append((role, path))
            if response is None or response.status != 200:
                failed[f"{role} {path}"] = response and response.status
                continue
            scroll_width, client_width = page.evaluate(OVERFLOW)
            if scroll_width > client_width:
                overflowing[f"{role} {path}"] = (scroll_width, page.evaluate(CULPRITS))
            if _kind(path) not in axed:  # each kind of page once: its structure is the same for every role
                axed.add(_kind(path))
                found = axe.run(page, options=WCAG_AA).response["violations"]
                if found:
                    violations[f"{role} {path}"] = [f"{v['id']}: {v['nodes'][0]['target']}" for v in found]
            if path in pages:  # one object of each kind linked from the navigation's pages
                for href in _links(page, "main a"):
                    href = href.split("#")[0]
                    if (
                        DETAIL.match(href)
                        and _kind(href) not in kinds
                        and len(queue) - len(pages) < MAX_DETAILS_PER_ROLE
                    ):
                        kinds.add(_kind(href))
                        queue.append(href)
        context.close()

    # then every page opens, none scrolls sideways, and none breaks an accessibility rule
    assert not failed, f"Pages that did not open: {failed}"
    assert not overflowing, f"Pages wider than the phone (scrollWidth, culprits): {overflowing}"
    assert not violations, violations
    assert len(checked) > 60, checked  # every role's navigation and its objects were walked
    # About a minute on a quiet machine (the demo data, ~130 pages, axe once per kind of page).
