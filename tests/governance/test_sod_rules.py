"""Separation-of-duties rules: the admin pages to define, change, deactivate and reactivate them,
the list everyone who reads the catalogue sees, and the services behind them."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import LifecycleStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import SodRule
from governance.services.catalogue import (
    sod_rule_create,
    sod_rule_deactivate,
    sod_rule_reactivate,
    sod_rule_update,
)
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    PersonFactory,
    SodRuleFactory,
    SystemFactory,
)

pytestmark = pytest.mark.django_db

LIST = reverse("governance:sod_rule_list")
CREATE = reverse("governance:sod_rule_create")


def edit_url(rule):
    return reverse("governance:sod_rule_edit", args=[rule.pk])


def sod_events():
    return list(AuditEvent.objects.filter(action__startswith="sod_rule.").order_by("seq"))


@pytest.fixture
def payments():
    return SystemFactory(name="Payments")


@pytest.fixture
def create_payee(payments):
    return EntitlementFactory(system=payments, name="create_payee")


@pytest.fixture
def approve_payment(payments):
    return EntitlementFactory(system=payments, name="approve_payment")


@pytest.fixture
def reader():
    """An owner: reads the whole catalogue, is no admin."""
    person = PersonFactory(name="Olu Owner")
    person.user.groups.add(Group.objects.get(name="owner"))
    return person.user


def form_data(entitlements, **overrides):
    data = {
        "name": "Payee vs approval",
        "entitlements": [e.pk for e in entitlements],
        "severity": "critical",
        "action": "block",
        "description": "Who adds a payee does not approve paying them.",
    }
    return {**data, **overrides}


#
# Admin pages
#
def test_admin_creates_edits_deactivates_and_reactivates_a_rule_through_the_pages(
    client, admin_user, create_payee, approve_payment
):
    client.force_login(admin_user)
    form = client.get(CREATE)
    assert form.status_code == 200
    # the multi-select offers live entitlements as "system / entitlement"
    assert "Payments / approve_payment" in form.content.decode()

    # when the admin adds a rule
    response = client.post(CREATE, form_data([create_payee, approve_payment]), follow=True)

    # then it is listed, with its entitlements, and audited
    assert response.status_code == 200
    assert "Payee vs approval added." in response.content.decode()
    rule = SodRule.objects.get()
    assert set(rule.entitlements.all()) == {create_payee, approve_payment}
    assert (rule.severity, rule.action, rule.is_active) == ("critical", "block", True)
    assert "Payments / create_payee" in response.content.decode()
    created = AuditEvent.objects.get(action="sod_rule.created")
    assert created.target_id == str(rule.pk)
    assert created.data["entitlements"] == sorted([create_payee.pk, approve_payment.pk])

    # when the admin edits it: a third entitlement, an extra stage instead of a block
    third = EntitlementFactory(name="release_batch")
    response = client.post(
        edit_url(rule),
        form_data([create_payee, approve_payment, third], action="extra_stage"),
        follow=True,
    )
    assert "Payee vs approval updated." in response.content.decode()
    rule.refresh_from_db()
    assert rule.action == "extra_stage" and rule.entitlements.count() == 3
    updated = AuditEvent.objects.get(action="sod_rule.updated")
    # only what changed, before and after
    assert updated.data == {
        "before": {"action": "block", "entitlements": sorted([create_payee.pk, approve_payment.pk])},
        "after": {"action": "extra_stage", "entitlements": sorted([create_payee.pk, approve_payment.pk, third.pk])},
    }

    # when the admin deactivates it
    response = client.post(
        reverse("governance:sod_rule_deactivate", args=[rule.pk]), {"reason": "Replaced by a wider rule"}, follow=True
    )
    assert "deactivated" in response.content.decode()
    rule.refresh_from_db()
    assert not rule.is_active
    assert AuditEvent.objects.get(action="sod_rule.deactivated").data == {"reason": "Replaced by a wider rule"}

    # deactivating again is a conflict shown as a message, and records nothing
    response = client.post(reverse("governance:sod_rule_deactivate", args=[rule.pk]), {"reason": "again"}, follow=True)
    assert "already inactive" in response.content.decode()
    assert AuditEvent.objects.filter(action="sod_rule.deactivated").count() == 1

    # when the admin reactivates it
    response = client.post(
        reverse("governance:sod_rule_reactivate", args=[rule.pk]), {"reason": "Still needed"}, follow=True
    )
    assert "is active again" in response.content.decode()
    rule.refresh_from_db()
    assert rule.is_active
    assert [e.action for e in sod_events()] == [
        "sod_rule.created",
        "sod_rule.updated",
        "sod_rule.deactivated",
        "sod_rule.reactivated",
    ]
    # the edit page shows the rule's trail
    assert "sod_rule.reactivated" in client.get(edit_url(rule)).content.decode()


def test_saving_the_edit_form_unchanged_writes_nothing(client, admin_user, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", severity="high", entitlements=[create_payee, approve_payment])
    client.force_login(admin_user)
    response = client.post(
        edit_url(rule),
        form_data([create_payee, approve_payment], name="Pair", severity="high", action=rule.action, description=""),
    )
    assert response.status_code == 302
    assert sod_events() == []


def test_a_non_admin_is_refused_and_nothing_is_written(client, reader, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    client.force_login(reader)

    # the list is readable, without the admin's buttons
    page = client.get(LIST)
    assert page.status_code == 200 and "Pair" in page.content.decode()
    assert CREATE not in page.content.decode() and edit_url(rule) not in page.content.decode()

    assert client.get(CREATE).status_code == 403
    assert client.post(CREATE, form_data([create_payee, approve_payment])).status_code == 403
    assert client.get(edit_url(rule)).status_code == 403
    assert client.post(edit_url(rule), form_data([create_payee, approve_payment])).status_code == 403
    assert client.post(reverse("governance:sod_rule_deactivate", args=[rule.pk]), {"reason": "x"}).status_code == 403
    rule.is_active = False
    rule.save()
    assert client.post(reverse("governance:sod_rule_reactivate", args=[rule.pk]), {"reason": "x"}).status_code == 403

    assert list(SodRule.objects.values_list("name", flat=True)) == ["Pair"]
    rule.refresh_from_db()
    assert rule.action == "extra_stage" and not rule.is_active
    assert sod_events() == []


def test_a_requester_reads_the_rules_like_the_catalogue(client, create_payee, approve_payment):
    SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    person = PersonFactory()
    person.user.groups.add(Group.objects.get(name="requester"))
    client.force_login(person.user)
    assert client.get(reverse("governance:entitlement_list")).status_code == 200
    assert client.get(LIST).status_code == 200
    assert client.get(CREATE).status_code == 403


def test_the_catalogue_links_to_the_rules(client, reader):
    client.force_login(reader)
    page = client.get(reverse("governance:entitlement_list")).content.decode()
    assert f'href="{LIST}"' in page and "Separation-of-duties rules" in page


def test_fewer_than_two_entitlements_is_refused_beside_the_field(client, admin_user, create_payee, approve_payment):
    client.force_login(admin_user)

    # when only one entitlement is chosen (twice over, which is still one)
    response = client.post(CREATE, {**form_data([create_payee]), "entitlements": [create_payee.pk, create_payee.pk]})

    # then the form comes back with the error beside the entitlements, and nothing is written
    assert response.status_code == 400
    assert response.context["form"].errors["entitlements"] == ["Choose two or more different entitlements."]
    assert 'id="id_entitlements_error"' in response.content.decode()
    assert not SodRule.objects.exists() and sod_events() == []

    # and the same on edit
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    response = client.post(edit_url(rule), form_data([approve_payment], name="Pair"))
    assert response.status_code == 400
    assert "entitlements" in response.context["form"].errors
    assert rule.entitlements.count() == 2 and sod_events() == []


def test_a_duplicate_name_is_refused_beside_the_field(client, admin_user, create_payee, approve_payment):
    SodRuleFactory(name="Taken", entitlements=[create_payee, approve_payment], is_active=False)
    rule = SodRuleFactory(name="Mine", entitlements=[create_payee, approve_payment])
    client.force_login(admin_user)

    # an inactive rule keeps its name
    response = client.post(CREATE, form_data([create_payee, approve_payment], name="Taken"))
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["Another SoD rule has this name."]
    assert 'id="id_name_error"' in response.content.decode()

    response = client.post(edit_url(rule), form_data([create_payee, approve_payment], name="Taken"))
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["Another SoD rule has this name."]

    assert SodRule.objects.count() == 2
    rule.refresh_from_db()
    assert rule.name == "Mine" and sod_events() == []


def test_the_form_offers_only_live_entitlements_but_keeps_the_rules_retired_ones(
    client, admin_user, create_payee, approve_payment
):
    retired = EntitlementFactory(name="old_role", status=LifecycleStatus.RETIRED)
    in_retired_system = EntitlementFactory(name="in_dead_system", system=SystemFactory(status=LifecycleStatus.RETIRED))
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment, retired])
    client.force_login(admin_user)

    offered = client.get(CREATE).context["form"].fields["entitlements"].queryset
    assert list(offered) == [approve_payment, create_payee]  # system, then name
    on_edit = client.get(edit_url(rule)).context["form"].fields["entitlements"].queryset
    assert set(on_edit) == {approve_payment, create_payee, retired}
    assert in_retired_system not in on_edit

    # renaming keeps the retired member; adding a retired one is refused beside the field
    client.post(edit_url(rule), form_data([create_payee, approve_payment, retired], name="Renamed"))
    rule.refresh_from_db()
    assert rule.name == "Renamed" and rule.entitlements.count() == 3
    response = client.post(CREATE, {**form_data([create_payee]), "entitlements": [create_payee.pk, retired.pk]})
    assert response.status_code == 400 and "entitlements" in response.context["form"].errors


def test_unknown_rule_is_a_404_for_an_admin(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("governance:sod_rule_edit", args=[999999])).status_code == 404
    assert client.post(reverse("governance:sod_rule_deactivate", args=[999999]), {"reason": "x"}).status_code == 404


def test_deactivating_needs_a_reason(client, admin_user, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    client.force_login(admin_user)
    response = client.post(reverse("governance:sod_rule_deactivate", args=[rule.pk]), {"reason": ""}, follow=True)
    assert "Give a reason." in response.content.decode()
    rule.refresh_from_db()
    assert rule.is_active and sod_events() == []


#
# The list
#
@pytest.fixture
def three_rules(payments, create_payee, approve_payment):
    ledger = SystemFactory(name="Ledger")
    post_entry, close_period = (
        EntitlementFactory(system=ledger, name="post_entry"),
        EntitlementFactory(system=ledger, name="close_period"),
    )
    return [
        SodRuleFactory(
            name="Payee vs approval", severity="critical", action="block", entitlements=[create_payee, approve_payment]
        ),
        SodRuleFactory(
            name="Post vs close", severity="medium", action="extra_stage", entitlements=[post_entry, close_period]
        ),
        SodRuleFactory(
            name="Old pairing",
            severity="low",
            action="extra_stage",
            is_active=False,
            entitlements=[approve_payment, post_entry],
        ),
    ]


def names(response):
    return [rule.name for rule in response.context["page_obj"]]


def test_the_list_filters_searches_and_sorts(client, reader, three_rules):
    client.force_login(reader)
    assert names(client.get(LIST)) == ["Old pairing", "Payee vs approval", "Post vs close"]
    assert names(client.get(LIST, {"status": "active"})) == ["Payee vs approval", "Post vs close"]
    assert names(client.get(LIST, {"status": "inactive"})) == ["Old pairing"]
    assert names(client.get(LIST, {"severity": "critical"})) == ["Payee vs approval"]
    assert names(client.get(LIST, {"action": "extra_stage"})) == ["Old pairing", "Post vs close"]
    assert names(client.get(LIST, {"action": "extra_stage", "status": "active"})) == ["Post vs close"]
    # by rule name, entitlement name or system name, each rule once
    assert names(client.get(LIST, {"q": "payee"})) == ["Payee vs approval"]
    assert names(client.get(LIST, {"q": "approve_payment"})) == ["Old pairing", "Payee vs approval"]
    assert names(client.get(LIST, {"q": "ledger"})) == ["Old pairing", "Post vs close"]
    # worst severity first, or last
    assert names(client.get(LIST, {"sort": "-severity"})) == ["Payee vs approval", "Post vs close", "Old pairing"]
    assert names(client.get(LIST, {"sort": "severity"})) == ["Old pairing", "Post vs close", "Payee vs approval"]
    assert names(client.get(LIST, {"sort": "-status"}))[-1] == "Old pairing"


def test_the_list_shows_each_rules_entitlements_severity_and_action(client, reader, three_rules):
    client.force_login(reader)
    body = client.get(LIST, {"q": "Payee vs"}).content.decode()
    assert "Payments / approve_payment" in body and "Payments / create_payee" in body
    assert "Critical" in body and "Block" in body and "Active" in body
    body = client.get(LIST, {"status": "inactive"}).content.decode()
    assert "Extra approval stage" in body and "Inactive" in body


def test_the_list_explains_an_empty_result(client, reader, admin_user, three_rules):
    client.force_login(reader)
    assert "No rule matches these filters." in client.get(LIST, {"q": "nothing-like-this"}).content.decode()
    SodRule.objects.all().delete()
    body = client.get(LIST).content.decode()
    assert "No separation-of-duties rules yet." in body and CREATE not in body
    client.force_login(admin_user)
    assert CREATE in client.get(LIST).content.decode()


def test_htmx_filtering_returns_only_the_results(client, reader, three_rules):
    client.force_login(reader)
    response = client.get(LIST, {"status": "inactive"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert '<div id="results"' in body and "<html" not in body
    assert names(response) == ["Old pairing"]


def test_the_list_pages(client, reader, create_payee, approve_payment):
    for number in range(55):
        SodRuleFactory(name=f"Rule {number:02}", entitlements=[create_payee, approve_payment])
    client.force_login(reader)
    first, second = client.get(LIST), client.get(LIST, {"page": 2})
    assert len(first.context["page_obj"]) == 50 and names(second) == [f"Rule {n}" for n in range(50, 55)]


def test_the_list_query_count_is_constant(client, reader, count_queries):
    # given one rule
    client.force_login(reader)
    SodRuleFactory(entitlements=[EntitlementFactory(), EntitlementFactory()])
    one = count_queries(lambda: client.get(LIST))
    # when there are fifteen, each over three entitlements in different systems
    for _ in range(14):
        SodRuleFactory(entitlements=[EntitlementFactory(), EntitlementFactory(), EntitlementFactory()])
    fifteen = count_queries(lambda: client.get(LIST))
    # then the page costs the same
    assert fifteen == one


#
# Services
#
def test_services_refuse_non_admins(reader, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    with pytest.raises(PermissionRefused):
        sod_rule_create(
            actor=reader, name="x", entitlements=[create_payee, approve_payment], severity="high", action="block"
        )
    with pytest.raises(PermissionRefused):
        sod_rule_update(
            rule_id=rule.pk,
            actor=reader,
            name="x",
            entitlements=[create_payee, approve_payment],
            severity="high",
            action="block",
            description="",
        )
    with pytest.raises(PermissionRefused):
        sod_rule_deactivate(rule_id=rule.pk, actor=reader, reason="x")
    assert sod_events() == []


def test_reactivating_an_active_rule_is_an_invalid_transition(admin_user, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    with pytest.raises(InvalidTransition, match="already active"):
        sod_rule_reactivate(rule_id=rule.pk, actor=admin_user, reason="x")
    assert sod_events() == []


def test_update_records_renames_and_descriptions(admin_user, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    sod_rule_update(
        rule_id=rule.pk,
        actor=admin_user,
        name="Payee vs approval",
        entitlements=[approve_payment, create_payee],
        severity=rule.severity,
        action=rule.action,
        description="Why",
    )
    (event,) = sod_events()
    assert event.data == {
        "before": {"name": "Pair", "description": ""},
        "after": {"name": "Payee vs approval", "description": "Why"},
    }


def test_update_refuses_an_unknown_severity_beside_the_field(admin_user, create_payee, approve_payment):
    rule = SodRuleFactory(name="Pair", entitlements=[create_payee, approve_payment])
    with pytest.raises(ValidationFailed) as refused:
        sod_rule_update(
            rule_id=rule.pk,
            actor=admin_user,
            name="Pair",
            entitlements=[create_payee, approve_payment],
            severity="apocalyptic",
            action="block",
            description="",
        )
    assert "severity" in refused.value.field_errors
    rule.refresh_from_db()
    assert rule.action == "extra_stage" and sod_events() == []


#
# The policy sees only active rules
#
def test_a_deactivated_rule_no_longer_blocks_a_request(client, admin_user, create_payee, approve_payment):
    from jit.choices import RequestStatus
    from jit.services.requests import access_request_submit

    # given alice holds one half of a blocked pair
    alice = PersonFactory(name="Alice")
    GrantFactory(identity=alice, entitlement=create_payee)
    rule = sod_rule_create(
        actor=admin_user,
        name="Payee vs approval",
        entitlements=[create_payee, approve_payment],
        severity="critical",
        action="block",
    )

    def submit():
        return access_request_submit(
            actor=alice.user, beneficiary_id=alice.pk, entitlement_id=approve_payment.pk, justification="Month end"
        )

    with pytest.raises(ValidationFailed, match="Payee vs approval"):
        submit()

    # when an admin deactivates the rule on its page
    client.force_login(admin_user)
    client.post(reverse("governance:sod_rule_deactivate", args=[rule.pk]), {"reason": "Dual control elsewhere"})

    # then the other half may be asked for, and the decision records no conflict
    request = submit()
    assert request.status == RequestStatus.PENDING
    assert request.policy["sod_conflicts"] == []
