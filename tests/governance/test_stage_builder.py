"""Approval stages are edited with a stage builder, with a preview of who would approve (issue 16, admin item 1)."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from audit.models import AuditEvent
from governance.models import Entitlement
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

BUILDER = "governance:approval_stages_builder"


def edit_data(client, entitlement) -> dict:
    """The edit form as the page shows it, without its stages (the builder's fields replace them)."""
    form = client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).context["form"]
    return {
        name: form[name].value()
        for name in form.fields
        if name != "approval_stages" and form[name].value() not in (None, False)
    }


def stages_post(*stages) -> dict:
    data = {}
    for number, (approver, group, quorum) in enumerate(stages, start=1):
        data |= {f"stage-{number}-approver": approver, f"stage-{number}-group": group, f"stage-{number}-quorum": quorum}
    return data


@pytest.fixture
def approvers():
    group = Group.objects.create(name="dba")
    for name in ("Dee One", "Dee Two"):
        PersonFactory(name=name).user.groups.add(group)
    return group


def test_the_edit_page_shows_a_builder_not_json(client, admin_user):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)

    html = client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).content.decode()

    assert 'class="stage-builder"' in html and "<legend>Approval stages" in html
    assert 'name="stage-1-approver"' in html and 'name="stage-1-quorum"' in html
    assert "<noscript>" in html  # a spare row adds a stage without script
    assert "Approval stages (JSON)" not in html and "<textarea" not in html.split("stage-builder")[1][:3000]
    assert f"{entitlement.owner.name}, the entitlement&#x27;s owner" in html  # the preview


def test_a_two_stage_path_posted_from_the_builder_is_saved_and_audited(client, admin_user, approvers):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)

    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {**edit_data(client, entitlement), **stages_post(("system_owner", "", "1"), ("group", "dba", "2"))},
    )

    assert response.status_code == 302
    entitlement.refresh_from_db()
    assert entitlement.approval_stages == [
        {"approver": "system_owner", "quorum": 1},
        {"approver": "group", "quorum": 2, "group": "dba"},
    ]
    assert AuditEvent.objects.filter(action="entitlement.updated").exists()


def test_each_bad_stage_is_named_beside_it_and_nothing_is_saved(client, admin_user):
    entitlement = EntitlementFactory()
    before = entitlement.approval_stages
    client.force_login(admin_user)

    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {
            **edit_data(client, entitlement),
            **stages_post(("entitlement_owner", "", "1"), ("group", "nope", "1"), ("system_owner", "", "9")),
        },
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="stage-2-error"' in html and "Stage 2: group &#x27;nope&#x27; does not exist." in html
    assert 'id="stage-3-error"' in html and "Stage 3: quorum must be between 1 and 5." in html
    assert 'id="stage-1-error"' not in html
    assert "Fix the stages marked above" in str(response.context["form"].errors["approval_stages"])
    entitlement.refresh_from_db()
    assert entitlement.approval_stages == before
    # the stages come back as sent, to be fixed rather than typed again
    assert 'id="stage-3-approver"' in html and 'id="stage-4-approver"' not in html


def test_a_path_with_no_stage_is_refused(client, admin_user):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)

    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {**edit_data(client, entitlement), **stages_post(("", "", "1"))},  # the only stage set to "No stage"
    )

    assert response.status_code == 400
    assert "required" in str(response.context["form"].errors["approval_stages"]).lower()


def test_raw_json_from_a_script_still_works(client, admin_user):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)

    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {**edit_data(client, entitlement), "approval_stages": '[{"approver": "system_owner"}]'},
    )

    assert response.status_code == 302
    entitlement.refresh_from_db()
    assert entitlement.approval_stages == [{"approver": "system_owner", "quorum": 1}]


def test_the_builder_adds_moves_and_removes_stages(client, admin_user):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)
    url = reverse(BUILDER)
    base = {"entitlement": entitlement.pk, **stages_post(("entitlement_owner", "", "1"), ("system_owner", "", "1"))}

    added = client.get(url, {**base, "stage_op": "add"}).content.decode()
    moved = client.get(url, {**base, "stage_op": "up-2"}).content.decode()
    removed = client.get(url, {**base, "stage_op": "remove-1"}).content.decode()

    assert added.count('class="stage"') == 3 and 'id="stage-3-approver" name="stage-3-approver"' in added
    assert "<noscript>" not in added  # htmx would parse its fields as real ones
    assert moved.index('value="system_owner" selected') < moved.index('value="entitlement_owner" selected')
    assert removed.count('class="stage"') == 1 and 'value="system_owner" selected' in removed
    assert 'id="stage-1-remove" disabled' in removed  # the last stage cannot be removed


def test_the_preview_names_who_would_approve(client, admin_user, approvers):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)

    html = client.get(
        reverse(BUILDER),
        {"entitlement": entitlement.pk, **stages_post(("group", "dba", "2"), ("system_owner", "", "1"))},
    ).content.decode()

    assert "Any 2 of 2 in dba: Dee One, Dee Two" in html
    assert f"{entitlement.system.owner.name}, the system&#x27;s owner" in html


def test_the_builder_costs_the_same_for_one_stage_or_ten(client, admin_user, approvers, count_queries):
    entitlement = EntitlementFactory()
    client.force_login(admin_user)
    url = reverse(BUILDER)

    one = count_queries(lambda: client.get(url, {"entitlement": entitlement.pk, **stages_post(("group", "dba", "1"))}))
    ten = count_queries(
        lambda: client.get(url, {"entitlement": entitlement.pk, **stages_post(*[("group", "dba", "1")] * 10)})
    )

    assert one == ten


def test_only_who_may_edit_the_entitlement_uses_the_builder(client):
    entitlement = EntitlementFactory()
    stranger = PersonFactory(user__roles=["owner"])
    client.force_login(stranger.user)

    assert client.get(reverse(BUILDER), {"entitlement": entitlement.pk}).status_code == 403
    assert client.get(reverse(BUILDER), {"system": entitlement.system.pk}).status_code in (403, 404)
    assert client.get(reverse(BUILDER), {"entitlement": 999_999}).status_code == 404
    assert client.get(reverse(BUILDER)).status_code == 403

    client.force_login(entitlement.owner.user)
    assert client.get(reverse(BUILDER), {"entitlement": entitlement.pk}).status_code == 200


def test_a_new_entitlement_gets_its_stages_from_the_builder(client, admin_user):
    system = SystemFactory()
    client.force_login(admin_user)

    page = client.get(reverse("governance:entitlement_create", args=[system.pk])).content.decode()
    response = client.post(
        reverse("governance:entitlement_create", args=[system.pk]),
        {
            "name": "built-role",
            "owner": system.owner.user.username,
            "business_purpose": "reports",
            "risk_tier": "low",
            "review_cadence_days": 90,
            "allowed_identity_kinds": ["human"],
            "auto_approve_max_risk": "low",
            "auto_approve_max_finding_severity": "low",
            **stages_post(("beneficiary_owner", "", "1"), ("entitlement_owner", "", "1")),
        },
    )

    assert f"?system={system.pk}" in page
    assert response.status_code == 302, response.context["form"].errors
    created = Entitlement.objects.get(name="built-role")
    assert [s["approver"] for s in created.approval_stages] == ["beneficiary_owner", "entitlement_owner"]
