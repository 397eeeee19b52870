"""Certification in the browser (issue 12, points 1, 3, 4 and 8): admins define, preview and launch
campaigns; reviewers certify, revoke and hand over their items, one at a time or a selection at once;
owners and auditors read; nobody reaches another reviewer's items."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from governance.choices import GrantStatus, RiskTier
from governance.models import Campaign, CampaignStatus, Grant, ReviewItem
from governance.services.certification import campaign_create, campaign_launch, remediation_sync, review_decide
from governance.services.grants import grant_revoke_failed
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def admin():
    return PersonFactory(name="Ada Admin", user__username="ada", user__roles=["admin"]).user


@pytest.fixture
def rita():
    """A reviewer: she owns the entitlements of the payments system."""
    return PersonFactory(name="Rita Reviewer", user__username="rita", user__roles=["requester", "owner"])


@pytest.fixture
def ravi():
    return PersonFactory(name="Ravi Reviewer", user__username="ravi", user__roles=["requester", "owner"])


@pytest.fixture
def auditor():
    return PersonFactory(name="Aud Itor", user__username="aud", user__roles=["auditor"]).user


@pytest.fixture
def payments(rita):
    return SystemFactory(name="Payments", owner=rita)


@pytest.fixture
def ledger(payments, rita):
    return EntitlementFactory(name="ledger-write", system=payments, owner=rita, risk_tier=RiskTier.CRITICAL)


@pytest.fixture
def reports(ravi):
    return EntitlementFactory(name="reports-read", system=SystemFactory(name="BI", owner=ravi), owner=ravi)


def draft(admin, **fields):
    fields.setdefault("due_at", timezone.now() + timedelta(days=14))
    return campaign_create(actor=admin, name=fields.pop("name", "Q4 review"), **fields)


def launched(admin, **fields):
    return campaign_launch(campaign_id=draft(admin, **fields).pk, actor=admin)


def snapshot():
    """What a refused change must leave as it was."""
    return (
        AuditEvent.objects.count(),
        list(ReviewItem.objects.order_by("pk").values_list("pk", "decision", "reviewer_id", "reviewer_group")),
        list(Campaign.objects.order_by("pk").values_list("pk", "status", "name")),
    )


def form_data(**overrides):
    data = {
        "name": "Payments Q4",
        "description": "Quarterly review of payments access",
        "review_grants": "on",
        "reviewer": "entitlement_owner",
        "fallback_group": "admin",
        "second_stage_reviewer": "system_owner",
        "time_zone": "UTC",
        "due_at": "2030-01-15T17:00",
        "undecided_low": "keep",
        "undecided_medium": "recommendation",
        "undecided_high": "revoke",
        "undecided_critical": "revoke",
        "remediation": "decision",
    }
    return data | overrides


#
# Defining
#
def test_an_admin_defines_a_draft_with_its_scope_typed_in_and_the_due_date_in_their_time_zone(
    client, admin, ledger, reports, rita
):
    client.force_login(admin)
    assert client.get(reverse("governance:campaign_create")).status_code == 200
    response = client.post(
        reverse("governance:campaign_create"),
        form_data(
            entitlements="Payments / ledger-write\nreports-read",
            risk_tiers=["critical", "high"],
            owners="rita",
            time_zone="Europe/Paris",
            undecided_medium="revoke",
        ),
    )
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "governance:campaign_detail", args=[campaign.pk]
    )
    assert campaign.status == CampaignStatus.DRAFT
    assert campaign.scope == {
        "entitlements": [ledger.pk, reports.pk],
        "risk_tiers": ["critical", "high"],
        "owners": [rita.pk],
    }
    assert campaign.due_at == datetime(2030, 1, 15, 16, 0, tzinfo=UTC)  # 17:00 in Paris in winter
    assert campaign.undecided == {"low": "keep", "medium": "revoke", "high": "revoke", "critical": "revoke"}
    # The edit form shows it back in the zone it was written in.
    page = client.get(reverse("governance:campaign_edit", args=[campaign.pk])).content.decode()
    assert 'value="2030-01-15T17:00"' in page and "Payments / ledger-write" in page


def test_the_form_puts_errors_beside_their_fields(client, admin, ledger):
    EntitlementFactory(name="ledger-write")  # the same name in another system
    client.force_login(admin)
    response = client.post(
        reverse("governance:campaign_create"),
        form_data(entitlements="ledger-write\nno-such-thing", owners="nobody-here", due_at=""),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "in several systems" in errors["entitlements"][0]
    assert "No live entitlement “no-such-thing”" in errors["entitlements"][1]
    assert "nobody-here" in errors["owners"][0]
    assert "due_at" in errors
    # A rule the service keeps (a group reviewer needs a group) also sits beside its field.
    response = client.post(reverse("governance:campaign_create"), form_data(reviewer="group"))
    assert response.status_code == 400
    assert response.context["form"].errors["reviewer_group"] == ["Required for a group."]
    assert not Campaign.objects.exists()


def test_only_a_draft_is_edited(client, admin, ledger):
    campaign = draft(admin)
    client.force_login(admin)
    response = client.post(reverse("governance:campaign_edit", args=[campaign.pk]), form_data(name="Renamed"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"

    campaign_launch(campaign_id=campaign.pk, actor=admin)
    response = client.post(reverse("governance:campaign_edit", args=[campaign.pk]), form_data(name="Again"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    follow = client.get(response["Location"])
    assert "only a draft is edited" in follow.content.decode()


def test_only_admins_define_launch_close_and_cancel(client, admin, rita, auditor, ledger):
    GrantFactory(entitlement=ledger)
    campaign = draft(admin)
    for user in (rita.user, auditor):
        client.force_login(user)
        before = snapshot()
        assert client.get(reverse("governance:campaign_create")).status_code == 403
        assert client.post(reverse("governance:campaign_create"), form_data()).status_code == 403
        for name in ("campaign_edit", "campaign_launch", "campaign_close", "campaign_cancel", "campaign_retry"):
            assert client.post(reverse(f"governance:{name}", args=[campaign.pk]), {"reason": "x"}).status_code == 403
        assert snapshot() == before


def test_an_admin_cancels_with_a_reason(client, admin, ledger):
    campaign = draft(admin)
    client.force_login(admin)
    url = reverse("governance:campaign_cancel", args=[campaign.pk])
    response = client.post(url, {"reason": ""})
    assert response.status_code == 400 and response.context["form"].errors["reason"]
    assert client.post(url, {"reason": "Superseded by the audit's own review"}).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    event = AuditEvent.objects.for_target(campaign).get(action="campaign.cancelled")
    assert event.data["reason"] == "Superseded by the audit's own review"


#
# Preview and launch
#
def test_the_draft_page_previews_how_many_items_for_whom_and_how_many_without_a_reviewer(client, admin, ledger):
    GrantFactory(entitlement=ledger)
    GrantFactory(entitlement=ledger)
    GrantFactory(entitlement=EntitlementFactory(owner=PersonFactory(status="offboarded")))
    campaign = draft(admin)
    client.force_login(admin)

    response = client.get(reverse("governance:campaign_detail", args=[campaign.pk]))

    preview = response.context["preview"]
    assert (preview.total, preview.per_reviewer, preview.without_reviewer) == (
        3,
        [("rita", 2), ("group “admin”", 1)],
        1,
    )
    page = response.content.decode()
    assert "Launching now opens <strong>3</strong> items" in page
    assert f'action="{reverse("governance:campaign_launch", args=[campaign.pk])}"' in page
    assert not ReviewItem.objects.exists()  # the preview wrote nothing


def test_launch_opens_the_items_and_the_page_shows_progress(client, admin, ledger):
    GrantFactory(entitlement=ledger)
    campaign = draft(admin)
    client.force_login(admin)

    response = client.post(reverse("governance:campaign_launch", args=[campaign.pk]), follow=True)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE and campaign.items_total == 1
    assert "Launched Q4 review: 1 items" in response.content.decode()
    assert response.context["progress"]["total"] == 1
    assert "0 of 1 decided (0%)" in response.content.decode()


@override_settings(CERTIFICATION_LAUNCH_INLINE_MAX=1)
def test_a_big_scope_is_launched_in_the_background_and_the_page_follows_it(client, admin, ledger):
    GrantFactory(entitlement=ledger)
    GrantFactory(entitlement=ledger)
    campaign = draft(admin)
    client.force_login(admin)

    client.post(reverse("governance:campaign_launch", args=[campaign.pk]))

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.LAUNCHING and not ReviewItem.objects.exists()
    page = client.get(reverse("governance:campaign_detail", args=[campaign.pk])).content.decode()
    assert "Launching…" in page and 'hx-trigger="every 2s"' in page


def test_close_now_applies_the_rule_and_failed_revocations_are_retried(client, admin, ledger):
    grant = GrantFactory(entitlement=ledger)
    campaign = launched(admin)
    client.force_login(admin)

    client.post(reverse("governance:campaign_close", args=[campaign.pk]))

    item = ReviewItem.objects.get()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CLOSED
    assert (item.decision, item.decided_by_rule) == ("revoke", True)  # critical: revoked by the rule
    grant_revoke_failed(grant_id=grant.pk, actor=None, error="LDAP down")
    remediation_sync()
    page = client.get(reverse("governance:campaign_detail", args=[campaign.pk])).content.decode()
    assert "Revocations that failed" in page and "LDAP down" in page  # the connector's own words

    client.post(reverse("governance:campaign_retry", args=[campaign.pk]), {"items": [item.pk]})

    item.refresh_from_db()
    assert item.remediation == "revoking"
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REVOKING


#
# Who sees what
#
def test_owners_see_the_campaigns_of_what_they_own_and_only_their_items(client, admin, rita, ravi, ledger, reports):
    GrantFactory(entitlement=ledger)
    GrantFactory(entitlement=reports)
    campaign = launched(admin)
    other = launched(admin, name="Only BI", scope={"entitlements": [reports.pk]})
    outsider = PersonFactory(user__username="olga", user__roles=["requester"])

    client.force_login(rita.user)
    listing = client.get(reverse("governance:campaign_list"))
    assert [c.name for c in listing.context["page_obj"].object_list] == ["Q4 review"]
    detail = client.get(reverse("governance:campaign_detail", args=[campaign.pk]))
    assert [i.entitlement.name for i in detail.context["page_obj"].object_list] == ["ledger-write"]
    assert client.get(reverse("governance:campaign_detail", args=[other.pk])).status_code == 404

    client.force_login(outsider.user)
    assert client.get(reverse("governance:campaign_list")).context["page_obj"].object_list == []
    assert client.get(reverse("governance:campaign_detail", args=[campaign.pk])).status_code == 404


def test_the_campaign_list_filters_sorts_and_says_when_it_is_empty(client, admin, ledger):
    draft(admin, name="Beta")
    launched(admin, name="Alpha")
    client.force_login(admin)
    url = reverse("governance:campaign_list")
    assert [c.name for c in client.get(url, {"sort": "name"}).context["page_obj"].object_list] == ["Alpha", "Beta"]
    assert [c.name for c in client.get(url, {"status": "draft"}).context["page_obj"].object_list] == ["Beta"]
    assert "No campaign matches these filters." in client.get(url, {"kind": "cadence"}).content.decode()


def test_an_auditor_reads_every_campaign_and_changes_nothing(client, admin, auditor, ledger):
    GrantFactory(entitlement=ledger)
    campaign = launched(admin)
    item = ReviewItem.objects.get()
    client.force_login(auditor)
    assert client.get(reverse("governance:campaign_detail", args=[campaign.pk])).status_code == 200
    queue = client.get(reverse("governance:review_queue"))
    assert queue.status_code == 200 and "they decide nothing" in queue.content.decode()

    before = snapshot()
    decide = reverse("governance:review_decide", args=[item.pk])
    assert client.post(decide, {"decision": "certify"}).status_code == 403
    assert (
        client.post(reverse("governance:review_decide_many"), {"items": [item.pk], "decision": "certify"}).status_code
        == 403
    )
    reassign = reverse("governance:review_reassign", args=[item.pk])
    assert client.post(reassign, {"reviewer": "ada", "reason": "x"}).status_code == 403
    assert snapshot() == before


def test_the_campaign_page_filters_its_items_in_place(client, admin, rita, ravi, queue):
    first = rita_items().first()
    review_decide(item_ids=[first.pk], actor=rita.user, decision="revoke", comment="gone")
    client.force_login(admin)
    url = reverse("governance:campaign_detail", args=[queue.pk])

    def shown(**filters):
        response = client.get(url, filters, HTTP_HX_TARGET="results", **HTMX)
        assert response.content.decode().lstrip().startswith('<div id="results"')  # only the items
        return sorted(item.pk for item in response.context["page_obj"].object_list)

    assert shown(reviewer="ravi") == [ReviewItem.objects.get(reviewer=ravi.user).pk]
    assert shown(decision="revoke") == [first.pk]
    assert len(shown(decision="open")) == 3
    assert shown(risk_tier="low") == list(ReviewItem.objects.filter(risk_tier="low").values_list("pk", flat=True))
    assert shown(recommendation="revoke") == sorted(
        ReviewItem.objects.filter(recommendation="revoke").values_list("pk", flat=True)
    )


#
# The reviewer's queue
#
@pytest.fixture
def queue(admin, ledger, reports, ravi):
    """Rita reviews two machines' critical ledger access; Ravi one report reader's."""
    bot = MachineFactory(name="billing-bot")
    GrantFactory(identity=bot, entitlement=ledger, last_used_at=timezone.now() - timedelta(days=3))
    GrantFactory(identity=MachineFactory(name="audit-bot"), entitlement=ledger)
    low = EntitlementFactory(name="ledger-read", system=ledger.system, owner=ledger.owner, risk_tier=RiskTier.LOW)
    GrantFactory(identity=bot, entitlement=low, reason="imported")
    GrantFactory(identity=MachineFactory(name="bi-bot"), entitlement=reports)
    return launched(admin)


def rita_items():
    return ReviewItem.objects.filter(reviewer__username="rita").order_by("pk")


def test_the_queue_shows_only_my_items_recommendation_first_with_reasons_and_evidence(client, rita, queue):
    client.force_login(rita.user)
    response = client.get(reverse("governance:review_queue"))
    page = response.content.decode()
    items = response.context["page_obj"].object_list
    assert {i.identity.name for i in items} == {"billing-bot", "audit-bot"}
    assert "bi-bot" not in page  # Ravi's
    assert page.index("Recommended:") < page.index("Last used")
    assert "high or critical risk" in page  # a reason, in words
    assert "Imported (standing)" in page
    assert "never recorded" in page  # audit-bot's grant was never used
    assert "Q4 review" in page and "0 of 4 decided" in page  # the campaign's progress


def test_the_queue_groups_by_identity_or_entitlement_and_filters(client, rita, queue):
    client.force_login(rita.user)
    url = reverse("governance:review_queue")
    by_identity = client.get(url).content.decode()
    assert by_identity.count('class="review-group"') == 2  # billing-bot, audit-bot
    by_entitlement = client.get(url, {"group": "entitlement"})
    groups = [i.entitlement.name for i in by_entitlement.context["page_obj"].object_list]
    assert groups == ["ledger-read", "ledger-write", "ledger-write"]
    assert by_entitlement.content.decode().count('class="review-group"') == 2
    critical = client.get(url, {"risk_tier": "critical"}).context["page_obj"].object_list
    assert {i.entitlement.name for i in critical} == {"ledger-write"}
    # htmx: only the results, swapped in place
    partial = client.get(url, {"risk_tier": "low"}, **HTMX)
    assert partial.content.decode().lstrip().startswith('<div id="results"')


def test_a_reviewer_certifies_one_item_and_the_row_answers_in_place(client, rita, queue):
    item = rita_items().first()
    client.force_login(rita.user)

    response = client.post(
        reverse("governance:review_decide", args=[item.pk]), {"decision": "certify", "comment": "still needed"}, **HTMX
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert f'id="review-{item.pk}"' in page and "Certified: " in page
    item.refresh_from_db()
    assert (item.decision, item.comment, item.decided_by) == ("certify", "still needed", rita.user)
    # Again: it is no longer waiting
    again = client.post(reverse("governance:review_decide", args=[item.pk]), {"decision": "revoke"}, **HTMX)
    assert again.status_code == 409


def test_a_selection_is_certified_or_revoked_at_once_and_revoking_needs_a_comment(client, rita, queue):
    ids = list(rita_items().values_list("pk", flat=True))
    client.force_login(rita.user)
    url = reverse("governance:review_decide_many")

    refused = client.post(url, {"items": ids[:2], "decision": "revoke", "comment": ""})

    assert refused.status_code == 400
    assert refused.context["bulk_form"].errors["comment"] == ["Required."]
    assert 'id="id_comment_error"' in refused.content.decode()  # beside the field
    assert not ReviewItem.objects.exclude(decision="").exists()

    done = client.post(url, {"items": ids[:2], "decision": "revoke", "comment": "left the project"})

    assert done.status_code == 302
    assert list(ReviewItem.objects.filter(pk__in=ids[:2]).values_list("decision", flat=True)) == ["revoke", "revoke"]
    client.post(url, {"items": ids[2:], "decision": "certify"})
    assert ReviewItem.objects.get(pk=ids[2]).decision == "certify"


def test_a_reviewer_hands_an_item_over_with_a_reason(client, rita, ravi, queue):
    item = rita_items().first()
    client.force_login(rita.user)
    url = reverse("governance:review_reassign", args=[item.pk])

    missing = client.post(url, {"reviewer": "ravi", "reason": ""}, **HTMX)
    assert missing.status_code == 400 and "This field is required." in missing.content.decode()
    unknown = client.post(url, {"reviewer": "nobody", "reason": "x"})
    assert unknown.status_code == 400 and unknown.context["form"].errors["reviewer"]

    response = client.post(url, {"reviewer": "ravi", "reason": "Ravi runs the ledger now"}, **HTMX)

    assert response.status_code == 200 and "handed over to ravi" in response.content.decode()
    item.refresh_from_db()
    assert (item.reviewer, item.reassign_reason) == (ravi.user, "Ravi runs the ledger now")
    client.force_login(ravi.user)
    assert item in client.get(reverse("governance:review_queue")).context["page_obj"].object_list


def test_another_reviewers_item_is_not_found_and_nothing_changes(client, rita, ravi, queue):
    ravis = ReviewItem.objects.get(reviewer=ravi.user)
    mine = rita_items().first()
    client.force_login(rita.user)
    before = snapshot()

    assert client.post(reverse("governance:review_decide", args=[ravis.pk]), {"decision": "revoke"}).status_code == 404
    bulk = {"items": [mine.pk, ravis.pk], "decision": "certify"}
    assert client.post(reverse("governance:review_decide_many"), bulk).status_code == 404
    reassign = reverse("governance:review_reassign", args=[ravis.pk])
    assert client.get(reassign).status_code == 404
    assert client.post(reassign, {"reviewer": "rita", "reason": "mine now"}).status_code == 404

    assert snapshot() == before


def test_nav_offers_my_reviews_to_everyone_and_campaigns_to_admins_auditors_and_owners(client, rita, auditor):
    requester = PersonFactory(user__username="reqi", user__roles=["requester"])
    client.force_login(requester.user)
    page = client.get(reverse("dashboard")).content.decode()
    assert "My reviews" in page and ">Campaigns<" not in page
    for user in (rita.user, auditor):
        client.force_login(user)
        assert ">Campaigns<" in client.get(reverse("dashboard")).content.decode()


#
# Query counts: constant in the queue's length
#
def _queue_of(n: int, admin, reviewer):
    entitlement = EntitlementFactory(owner=reviewer, risk_tier=RiskTier.HIGH)
    for i in range(n):
        GrantFactory(identity=MachineFactory(name=f"bot-{n}-{i}"), entitlement=entitlement)
    return launched(admin, name=f"{n} items", scope={"entitlements": [entitlement.pk]})


def _from_a_request(items, requester):
    """The items' grants came from approved access requests (the evidence the queue shows)."""
    from jit.models import AccessRequest

    for item in items:
        AccessRequest.objects.create(
            requester=requester.user,
            beneficiary=item.identity,
            entitlement=item.entitlement,
            duration=timedelta(hours=1),
            status="approved",
            grant=item.grant,
            justification=f"ticket {item.pk}",
        )


def test_the_queue_runs_as_many_queries_for_one_item_as_for_thirty(client, admin, rita, count_queries):
    requester = PersonFactory()
    client.force_login(rita.user)
    one = _queue_of(1, admin, rita)
    _from_a_request(ReviewItem.objects.filter(campaign=one).select_related("grant"), requester)
    url = reverse("governance:review_queue")
    client.get(url)  # warm the session
    first = count_queries(lambda: client.get(url))

    more = _queue_of(29, admin, rita)
    # Varied evidence: some grants came from an approved request, some were imported, the rest standing.
    items = list(ReviewItem.objects.filter(campaign=more).select_related("grant").order_by("pk"))
    _from_a_request(items[:10], requester)
    Grant.objects.filter(pk__in=[item.grant_id for item in items[10:20]]).update(reason="imported")
    many = count_queries(lambda: client.get(url))

    assert len(client.get(url).context["page_obj"].object_list) == 30
    assert first == many, f"{first} queries for 1 item, {many} for 30"


def test_the_campaign_page_runs_as_many_queries_for_one_item_as_for_thirty(client, admin, rita, count_queries):
    one = _queue_of(1, admin, rita)
    thirty = _queue_of(30, admin, rita)
    decided = ReviewItem.objects.filter(campaign=thirty).values_list("pk", flat=True)[:5]
    review_decide(item_ids=list(decided), actor=rita.user, decision="certify")
    client.force_login(admin)
    url = reverse("governance:campaign_detail", args=[one.pk])
    client.get(url)
    first = count_queries(lambda: client.get(url))

    url = reverse("governance:campaign_detail", args=[thirty.pk])
    many = count_queries(lambda: client.get(url))

    assert len(client.get(url).context["page_obj"].object_list) == 30
    assert first == many, f"{first} queries for 1 item, {many} for 30"


def test_an_admin_hands_over_an_item_from_the_campaign_page(client, admin, ravi, queue):
    item = rita_items().first()
    client.force_login(admin)
    page = client.get(reverse("governance:campaign_detail", args=[queue.pk])).content.decode()
    assert reverse("governance:review_reassign", args=[item.pk]) in page

    response = client.post(
        reverse("governance:review_reassign", args=[item.pk]), {"reviewer": "ravi", "reason": "Rita is on leave"}
    )

    assert response["Location"] == reverse("governance:campaign_detail", args=[queue.pk])
    item.refresh_from_db()
    assert item.reviewer == ravi.user


def test_the_campaign_list_links_the_reports_across_campaigns_for_those_who_may_read_them(client, admin, auditor, rita):
    not_certified = reverse("governance:report_not_certified")
    held = reverse("governance:report_held_access")
    for user in (admin, auditor):
        client.force_login(user)
        page = client.get(reverse("governance:campaign_list")).content.decode()
        assert "Reports across campaigns" in page
        assert f'href="{not_certified}"' in page and f'href="{held}"' in page
        assert client.get(not_certified).status_code == 200 and client.get(held).status_code == 200

    # An owner reads the reports of their own campaigns, not these: no link to a page that refuses them.
    client.force_login(rita.user)
    page = client.get(reverse("governance:campaign_list")).content.decode()
    assert "Reports across campaigns" not in page and not_certified not in page
    assert client.get(not_certified).status_code == 403


def test_the_form_offers_to_review_the_identities_themselves(client, admin):
    client.force_login(admin)
    form = client.get(reverse("governance:campaign_create")).content.decode()
    assert "Review the non-human identities themselves" in form

    response = client.post(
        reverse("governance:campaign_create"), form_data(review_grants="", review_identities="on", name="Machines")
    )
    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Machines")
    assert (campaign.review_grants, campaign.review_identities) == (False, True)

    refused = client.post(reverse("governance:campaign_create"), form_data(review_grants="", name="Nothing"))
    assert refused.status_code == 400
    assert "the identities themselves, or both" in refused.content.decode()
    assert not Campaign.objects.filter(name="Nothing").exists()
