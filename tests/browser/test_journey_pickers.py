"""Person fields pick from a live search; approval stages are built, not typed as JSON (issue 16, owner 3, admin 1)."""

import contextlib

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from governance.models import Entitlement, Identity
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def axe_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page, options=WCAG_AA).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}" for v in violations]


def test_an_owner_types_a_name_and_picks_the_backup_owner(page, login):
    olu = PersonFactory(name="Olu Owner", user__username="olu", user__roles=["owner"])
    bea = PersonFactory(name="Bea Backup", email="bea@example.org", user__username="bea")
    PersonFactory(name="Ben Bystander", user__username="ben")
    bot = MachineFactory(name="billing-bot", owner=olu)
    login("olu")
    page.goto(f"/inventory/identities/{bot.pk}/owner/")

    # when Olu types part of her name, the list offers her; the keyboard picks her
    field = page.get_by_role("combobox", name="Backup owner")
    field.press_sequentially("bea b", delay=30)
    options = page.get_by_role("listbox", name="People found")
    expect(options.get_by_role("option")).to_have_count(1)
    expect(field).to_have_attribute("aria-expanded", "true")
    field.press("ArrowDown")
    expect(options.get_by_role("option", name="Bea Backup")).to_have_attribute("aria-selected", "true")
    assert axe_violations(page) == []  # with the list open
    page.set_viewport_size({"width": 390, "height": 844})
    scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll <= client  # the open list fits a phone's screen
    field.press("Enter")

    # then the field holds her login, the list is closed, and saving names her
    expect(field).to_have_value("bea")
    expect(field).to_have_attribute("aria-expanded", "false")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("updated")
    assert Identity.objects.get(pk=bot.pk).backup_owner_id == bea.pk


def htmx_settled(page) -> None:
    """htmx wires up what it swapped in when it settles, just after the swap: a change made in between
    (a browser driven at full speed, never a person) is lost, and the builder then never shows its group."""
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")).to_have_count(0)


def test_an_admin_builds_a_two_stage_path_and_saves_it(page, login):
    PersonFactory(name="Ada Admin", user__username="ada", user__roles=["admin"])
    dba = Group.objects.create(name="dba")
    for name in ("Dee One", "Dee Two"):
        PersonFactory(name=name).user.groups.add(dba)
    entitlement = EntitlementFactory(name="orders-write", approval_stages=[{"approver": "entitlement_owner"}])
    login("ada")
    page.goto(f"/inventory/catalogue/{entitlement.pk}/edit/")
    builder = page.locator(".stage-builder")
    expect(builder.get_by_text(f"{entitlement.owner.name}, the entitlement's owner")).to_be_visible()

    # a second stage: the dba group, two of them
    page.get_by_role("button", name="Add a stage").click()
    expect(page.get_by_label("Who approves").nth(1)).to_be_visible()
    htmx_settled(page)
    page.locator("#stage-2-approver").select_option("group")
    htmx_settled(page)
    page.locator("#stage-2-group").select_option("dba")
    expect(builder).to_contain_text("Any 1 of 2 in dba: Dee One, Dee Two")  # the preview follows each change
    page.locator("#stage-2-quorum").fill("2")
    page.locator("#stage-2-quorum").press("Tab")
    expect(builder).to_contain_text("Any 2 of 2 in dba: Dee One, Dee Two")
    assert axe_violations(page) == []

    # the group stage goes first
    page.get_by_role("button", name="Move up stage 2").click()
    expect(page.locator("#stage-1-approver")).to_have_value("group")
    expect(page.locator("#stage-2-approver")).to_have_value("entitlement_owner")

    # on a phone the builder fits the screen
    page.set_viewport_size({"width": 390, "height": 844})
    scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll <= client
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("updated")
    assert Entitlement.objects.get(pk=entitlement.pk).approval_stages == [
        {"approver": "group", "quorum": 2, "group": "dba"},
        {"approver": "entitlement_owner", "quorum": 1},
    ]


def test_a_late_refresh_of_the_builder_never_undoes_a_later_change(page, login):
    PersonFactory(name="Ada Admin", user__username="ada", user__roles=["admin"])
    Group.objects.create(name="dba")
    entitlement = EntitlementFactory(name="orders-write", approval_stages=[{"approver": "entitlement_owner"}])
    login("ada")
    page.goto(f"/inventory/catalogue/{entitlement.pk}/edit/")

    # the builder's refreshes are held on the way to the server, to be let go in the order the test says
    held = []
    page.route("**/catalogue/approval-stages/**", lambda route: held.append(route))

    def until_held(count: int) -> None:
        while len(held) < count:
            page.wait_for_timeout(20)

    page.locator("#stage-1-approver").select_option("group")  # the first refresh
    until_held(1)
    page.locator("#stage-1-quorum").fill("2")
    page.locator("#stage-1-quorum").press("Tab")  # the second, while the first is on its way
    until_held(2)
    with contextlib.suppress(Exception):  # the browser may have cancelled it already
        held[0].continue_()
    page.wait_for_timeout(300)  # the first answer, had it been kept, is swapped in by now
    held[1].continue_()
    page.wait_for_load_state("networkidle")

    expect(page.locator("#stage-1-approver")).to_have_value("group")
    expect(page.locator("#stage-1-group")).to_be_visible()
    expect(page.locator("#stage-1-quorum")).to_have_value("2")


def test_a_campaigns_owners_are_picked_one_a_line(page, login):
    from datetime import timedelta

    from django.utils import timezone

    from governance.models import Campaign

    PersonFactory(name="Ada Admin", user__username="ada", user__roles=["admin"])
    bea = PersonFactory(name="Bea Backup", user__username="bea")
    ben = PersonFactory(name="Ben Bystander", user__username="ben")
    login("ada")
    page.goto("/inventory/campaigns/new/")
    page.get_by_role("textbox", name="Name", exact=True).fill("Owners Q1")
    page.get_by_label("Time zone of the dates below").select_option("UTC")
    page.locator("#id_due_at").fill((timezone.now() + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M"))

    # the first owner by keyboard, the second by pointer; each pick takes its own line
    owners = page.get_by_role("combobox", name="Owners")
    options = page.get_by_role("listbox", name="People found")
    owners.press_sequentially("bea b", delay=30)
    expect(options.get_by_role("option")).to_have_count(1)
    owners.press("ArrowDown")
    owners.press("Enter")
    expect(owners).to_have_value("bea\n")
    owners.press_sequentially("bysta", delay=30)
    options.get_by_role("option", name="Ben Bystander").click()
    expect(owners).to_have_value("bea\nben\n")
    assert axe_violations(page) == []

    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator("#messages")).to_contain_text("Check the preview")
    assert sorted(Campaign.objects.get(name="Owners Q1").scope["owners"]) == sorted([bea.pk, ben.pk])
