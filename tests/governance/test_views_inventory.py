"""Inventory pages (issue 3, item 7): rendering, permissions (IDOR), forms and query counts."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from governance.choices import GrantKind, GrantStatus, IdentityStatus, LifecycleStatus
from governance.errors import ValidationFailed
from governance.models import Finding, Identity
from governance.services import identities
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
    with_role,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def stranger():
    return with_role(PersonFactory(name="Rick Requester"), "requester")


@pytest.mark.parametrize("url_name", ["identity_list", "my_identities", "system_list", "entitlement_list"])
def test_list_pages_render_with_constant_queries(client, owner, count_queries, url_name):
    client.force_login(owner.user)
    grant = GrantFactory(identity=MachineFactory(owner=owner))
    one = count_queries(lambda: client.get(reverse(f"governance:{url_name}")))
    for _ in range(20):
        GrantFactory(
            identity=MachineFactory(owner=owner), entitlement=EntitlementFactory(system=grant.entitlement.system)
        )
    assert count_queries(lambda: client.get(reverse(f"governance:{url_name}"))) == one


# Measured on PostgreSQL: session, user, roles, paginator COUNT, the viewer's identity (may they
# register one?), the unread-notification badge, the break-glass banner, the page's keys, then its
# rows with their counts.
IDENTITY_LIST_QUERIES = 9


def test_identity_list_query_count_is_a_small_constant(client, owner, count_queries):
    # given 60 identities, more than a page
    client.force_login(owner.user)
    for _ in range(60):
        GrantFactory(identity=MachineFactory(owner=owner))
    # when the first and second pages are read
    first = count_queries(lambda: client.get(reverse("governance:identity_list")))
    second = count_queries(lambda: client.get(reverse("governance:identity_list"), {"page": 2, "sort": "-owner"}))
    # then the count is the same small constant
    assert first == second <= IDENTITY_LIST_QUERIES


def test_identity_list_filters_sorts_and_searches(client, owner, bot):
    MachineFactory(name="zeta-key", kind="api_key", owner=owner)
    client.force_login(owner.user)
    response = client.get(reverse("governance:identity_list"), {"kind": "api_key"})
    assert [i.name for i in response.context["page_obj"]] == ["zeta-key"]
    response = client.get(reverse("governance:identity_list"), {"q": "billing", "sort": "-name"})
    assert [i.name for i in response.context["page_obj"]] == ["billing-bot"]
    response = client.get(reverse("governance:identity_list"), {"q": "nothing-like-this"})
    assert b"No identity matches" in response.content


def test_detail_pages_render(client, owner, bot):
    grant = GrantFactory(identity=bot, kind="jit")
    client.force_login(owner.user)
    for url in [
        reverse("governance:identity_detail", args=[bot.pk]),
        reverse("governance:system_detail", args=[grant.entitlement.system_id]),
        reverse("governance:entitlement_detail", args=[grant.entitlement_id]),
        reverse("governance:grant_detail", args=[grant.pk]),
    ]:
        assert client.get(url).status_code == 200, url
    body = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    assert "left" in body or "min" in body  # time left shown for the JIT grant


def test_an_entitlements_holders_come_a_page_at_a_time_with_constant_queries(client, admin_user, count_queries):
    entitlement = EntitlementFactory()
    GrantFactory(entitlement=entitlement)
    client.force_login(admin_user)
    url = reverse("governance:entitlement_detail", args=[entitlement.pk])
    one = count_queries(lambda: client.get(url))
    GrantFactory.create_batch(55, entitlement=entitlement)
    many = count_queries(lambda: client.get(url))
    page = client.get(url)
    assert one == many and len(page.context["page_obj"]) == 50
    assert b"Page 1 of 2 \xc2\xb7 56 in all" in page.content


def test_requester_cannot_see_the_whole_inventory_or_others_identities(client, stranger, bot):
    client.force_login(stranger.user)
    assert client.get(reverse("governance:identity_list")).status_code == 403
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 404
    assert client.get(reverse("governance:identity_edit", args=[bot.pk])).status_code == 404
    response = client.post(reverse("governance:identity_offboard", args=[bot.pk]), {"reason": "mine now"})
    assert response.status_code == 404
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.ACTIVE


def test_an_owner_of_something_else_cannot_edit_this_identity(client, bot):
    other_owner = with_role(PersonFactory(), "owner")  # reads the inventory, owns nothing here
    client.force_login(other_owner.user)
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 200
    assert client.post(reverse("governance:identity_edit", args=[bot.pk]), {"name": "x"}).status_code == 403
    assert client.post(reverse("governance:identity_offboard", args=[bot.pk]), {"reason": "x"}).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="identity.").exists()


def test_owner_edits_and_offboards_their_machine_identity(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:identity_edit", args=[bot.pk]),
        {
            "name": "billing-bot",
            "team": "Payments",
            "credential_type": "static_secret",
            "secret_location": "secrets_manager",
            "rotation_period_days": "30",
        },
        follow=True,
    )
    assert response.status_code == 200 and b"updated" in response.content
    grant = GrantFactory(identity=bot)
    page = client.get(reverse("governance:identity_offboard", args=[bot.pk]))
    assert grant.entitlement.name in page.content.decode()
    response = client.post(reverse("governance:identity_offboard", args=[bot.pk]), {"reason": "replaced"}, follow=True)
    assert b"offboarded" in response.content
    bot.refresh_from_db()
    grant.refresh_from_db()
    assert bot.status == IdentityStatus.OFFBOARDED and grant.status == GrantStatus.REVOKING
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"identity.updated", "identity.offboarded"}


def test_bad_input_shows_the_error_beside_the_field_and_writes_nothing(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(reverse("governance:identity_owner", args=[bot.pk]), {"owner": "", "reason": "x"})
    assert response.status_code == 400
    assert response.context["form"].errors["owner"] == ["Required for non-human identities."]
    bot.refresh_from_db()
    assert bot.owner == owner
    assert not AuditEvent.objects.filter(action="identity.owner_changed").exists()


def test_entitlement_edit_rejects_bad_json_beside_the_field(client, owner):
    entitlement = EntitlementFactory(owner=owner)
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:entitlement_edit", args=[entitlement.pk]),
        {
            "name": entitlement.name,
            "owner": owner.user.username,
            "risk_tier": "low",
            "review_cadence_days": 90,
            "approval_stages": "[{oops",
            "allowed_identity_kinds": ["human"],
        },
    )
    assert "Not valid JSON" in str(response.context["form"].errors["approval_stages"])


def test_system_owner_confirms_a_pending_grant_on_its_page(client):
    system_owner = PersonFactory()
    grant = GrantFactory(
        status=GrantStatus.PENDING_PROVISION,
        granted_at=None,
        entitlement=EntitlementFactory(system=SystemFactory(owner=system_owner)),
    )
    client.force_login(system_owner.user)
    response = client.post(reverse("governance:grant_confirm_provisioned", args=[grant.pk]), follow=True)
    assert b"the grant is active" in response.content
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    # someone else cannot
    other = GrantFactory(status=GrantStatus.PENDING_PROVISION, granted_at=None)
    client.force_login(with_role(PersonFactory(), "owner").user)
    assert client.post(reverse("governance:grant_confirm_provisioned", args=[other.pk])).status_code == 403


def test_identity_list_filters_by_owner_name_and_open_finding(client, owner, bot):
    # given a second owner's bot and an open orphaned finding on ours
    MachineFactory(name="other-bot", owner=PersonFactory(name="Zed Other"))
    now = timezone.now()
    Finding.objects.create(
        key=f"orphaned:{bot.pk}", kind="orphaned", identity=bot, owner_to_act=owner, first_seen_at=now, last_seen_at=now
    )
    client.force_login(owner.user)
    # when / then
    by_owner = client.get(reverse("governance:identity_list"), {"owner": "zed"})
    assert [i.name for i in by_owner.context["page_obj"]] == ["other-bot"]
    by_finding = client.get(reverse("governance:identity_list"), {"finding": "orphaned"})
    assert [i.name for i in by_finding.context["page_obj"]] == ["billing-bot"]


def _sql_of(ctx, start: str) -> str:
    (sql,) = [query["sql"] for query in ctx.captured_queries if query["sql"].startswith(start)]
    return sql


def _plan(sql: str) -> str:
    """The plan PostgreSQL can choose at scale: a test's few rows would be read whole instead."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    return plan


KEYS = 'SELECT "governance_identity"."id" AS "pk" FROM'
KEYS_COUNTED = 'SELECT "governance_identity"."id" AS "pk", COUNT(*) OVER () AS "_total" FROM'


def test_the_identity_list_reads_its_page_by_key_with_only_what_its_rows_show(client, owner, bot):
    # given a bot with a live grant and an open finding, and another whose owner has left
    GrantFactory(identity=bot)
    now = timezone.now()
    Finding.objects.create(key="stale:1", kind="stale", identity=bot, first_seen_at=now, last_seen_at=now)
    gone = PersonFactory(name="Gone Owner", status=IdentityStatus.OFFBOARDED)
    MachineFactory(name="billing-orphan", owner=gone, team="p" * 70)
    client.force_login(owner.user)
    # when a search lists them
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("governance:identity_list"), {"q": "billing"})
    # then each row shows its owner (and whether they left), its team cut short, its counts
    body = response.content.decode()
    assert [i.name for i in response.context["page_obj"]] == ["billing-bot", "billing-orphan"]
    assert 'Gone Owner <span class="badge status-offboarded">Offboarded</span>' in body
    assert f"<td>{'p' * 59}…</td>" in body
    assert '<span class="badge risk-high">1</span>' in body
    assert f'<a href="{reverse("governance:identity_detail", args=[bot.pk])}">billing-bot</a>' in body
    # read by key, without the search again, and only the columns a row shows
    rows = _sql_of(ctx, 'SELECT "governance_identity"."id" AS "pk", "governance_identity"."name"')
    assert "LIKE" not in rows and '"description"' not in rows and '"backup_owner_id"' not in rows, rows


def test_the_open_finding_filter_reads_the_findings_identities_off_an_index(client, owner):
    # given stale bots owned by Zed and by Amy, a bot whose stale finding was resolved, one orphaned
    now = timezone.now()
    zed, amy = PersonFactory(name="Zed"), PersonFactory(name="Amy")
    stale = [MachineFactory(name="a-bot", owner=zed), MachineFactory(name="b-bot", owner=amy)]
    resolved, orphaned = MachineFactory(name="c-bot", owner=amy), MachineFactory(name="d-bot", owner=amy)
    for n, (identity, kind, status) in enumerate(
        [
            (stale[0], "stale", "open"),
            (stale[1], "stale", "open"),
            (resolved, "stale", "resolved"),
            (orphaned, "orphaned", "open"),
        ]
    ):
        Finding.objects.create(
            key=f"k{n}", kind=kind, status=status, identity=identity, first_seen_at=now, last_seen_at=now
        )
    client.force_login(owner.user)
    # when the list shows the identities with an open stale finding, by owner
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("governance:identity_list"), {"finding": "stale", "sort": "owner"}).context
    # then only those, in their owners' order
    assert [i.name for i in page["page_obj"]] == ["b-bot", "a-bot"]
    # the findings' identities read first, as one array off the open findings' (kind, identity) index, then
    # the identities by key: never every identity joined to the findings (50 ms at 100,000)
    keys = _sql_of(ctx, KEYS_COUNTED)
    assert "= ANY((ARRAY(SELECT" in keys
    # every one of them is read to sort them, so they are counted there, not by a COUNT reading them again
    assert page["page_obj"].paginator.count == 2
    assert not [q for q in ctx.captured_queries if "governance_identity" in q["sql"] and "SELECT COUNT(*)" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'gov_finding_open_kind_idx'")
        (definition,) = cursor.fetchone()
    assert "(kind, identity_id) WHERE ((status)::text = 'open'::text)" in definition, definition


@pytest.mark.parametrize(("text", "counted_with_keys"), [("billing", True), ("bi", False)])
def test_a_search_counts_its_matches_where_it_reads_them_all(client, owner, bot, text, counted_with_keys):
    # given two of 23 identities named "billing-..."
    MachineFactory(name="billing-two", owner=owner)
    MachineFactory.create_batch(20, owner=owner)
    client.force_login(owner.user)
    # when the list is searched
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("governance:identity_list"), {"q": text}).context["page_obj"]
    # then: a search through the trigram indexes reads every match to sort them, so it counts them
    # there; text too short for a trigram walks the list's order and stops at a page, so it counts apart
    assert [i.name for i in page][:2] == ["billing-bot", "billing-two"]
    assert page.paginator.count == len(page)
    counts = [
        q for q in ctx.captured_queries if q["sql"].startswith("SELECT COUNT(*)") and "governance_identity" in q["sql"]
    ]
    assert (len(counts), any(q["sql"].startswith(KEYS_COUNTED) for q in ctx.captured_queries)) == (
        (0, True) if counted_with_keys else (1, False)
    )


@pytest.mark.parametrize(("text", "through_the_owners_keys"), [("zed", True), ("ZE", False), ("d_o", True)])
def test_the_owner_filter_finds_identities_by_a_part_of_their_owners_name(
    client, owner, bot, text, through_the_owners_keys
):
    # given bots of Zed Other's and of Amy's, and one of Ed_Old's (an underscore is a plain character)
    zed = PersonFactory(name="Zed Other")
    MachineFactory(name="zed-bot-1", owner=zed)
    MachineFactory(name="zed-bot-2", owner=zed)
    MachineFactory(name="amy-bot", owner=PersonFactory(name="Amy Dowd"))
    MachineFactory(name="old-bot", owner=PersonFactory(name="Ed_Old"))
    client.force_login(owner.user)
    # when the list is filtered by the owner's name
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("governance:identity_list"), {"owner": text}).context["page_obj"]
    # then: the identities of the owners so named, whatever the case, counted right
    expected = {"zed": ["zed-bot-1", "zed-bot-2"], "ZE": ["zed-bot-1", "zed-bot-2"], "d_o": ["old-bot"]}[text]
    assert [i.name for i in page] == expected and page.paginator.count == len(expected)
    # owners read first as one array (their names through the trigram index), their identities by key,
    # and counted there; text too short for a trigram joins the owners and counts apart
    keys = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith((KEYS, KEYS_COUNTED))]
    assert len(keys) == 1
    assert ('"owner_id" = ANY((ARRAY(SELECT' in keys[0], keys[0].startswith(KEYS_COUNTED)) == (
        through_the_owners_keys,
        through_the_owners_keys,
    )


def test_a_kind_is_read_off_an_index_in_the_lists_order(client, owner, bot):
    MachineFactory(name="zeta-key", kind="api_key", owner=owner)
    client.force_login(owner.user)
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("governance:identity_list"), {"kind": "api_key"}).context["page_obj"]
    assert [i.name for i in page] == ["zeta-key"]
    # in name order off (kind, name, id): no walk of the name index past every other kind, no sort
    plan = _plan(_sql_of(ctx, KEYS))
    assert "gov_identity_kind_name_idx" in plan and "Sort" not in plan, plan


def test_identity_list_sorts_by_every_column_and_paginates(client, owner):
    for n in range(55):
        MachineFactory(name=f"bot-{n:02}", owner=owner)
    client.force_login(owner.user)
    for key in ["name", "-name", "kind", "status", "owner", "last_used_at", "-last_used_at"]:
        assert client.get(reverse("governance:identity_list"), {"sort": key}).status_code == 200, key
    page = client.get(reverse("governance:identity_list"), {"sort": "-name", "q": "bot-"}).context["page_obj"]
    assert len(page) == 50 and page[0].name == "bot-54" and page.paginator.num_pages == 2


def test_htmx_filtering_returns_only_the_results(client, owner, bot):
    client.force_login(owner.user)
    response = client.get(reverse("governance:identity_list"), {"q": "billing"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results"') and "billing-bot" in body and "<html" not in body


def test_my_identities_lists_what_i_own_or_back_up_and_explains_when_empty(client, owner, bot):
    # given a bot I back up, and a bot of someone else
    backed_up = MachineFactory(name="backup-bot", backup_owner=owner)
    MachineFactory(name="not-mine")
    client.force_login(owner.user)
    # when
    names = {i.name for i in client.get(reverse("governance:my_identities")).context["page_obj"]}
    # then
    assert names == {bot.name, backed_up.name}
    client.force_login(with_role(PersonFactory(), "requester").user)
    assert b"You own no identities yet" in client.get(reverse("governance:my_identities")).content


def test_a_requester_sees_their_own_identity_but_no_one_elses(client, stranger, bot):
    client.force_login(stranger.user)
    assert client.get(reverse("governance:identity_detail", args=[stranger.pk])).status_code == 200
    for name in ["identity_owner", "identity_suspend", "identity_reactivate"]:
        assert client.post(reverse(f"governance:{name}", args=[bot.pk]), {"reason": "x"}).status_code == 404
    assert client.get(reverse("governance:system_list")).status_code == 403
    assert client.get(reverse("governance:entitlement_list")).status_code == 200  # the catalogue is for everyone


def test_detail_page_shows_the_owner_chain_grants_past_expiry_findings_and_history(client, owner, bot):
    # given a JIT grant that ran out an hour ago but the sweep has not reached
    manager = PersonFactory(name="Mona Manager")
    Identity.objects.filter(pk=owner.pk).update(manager=manager)
    GrantFactory(
        identity=bot, kind=GrantKind.JIT, expires_at=timezone.now() + timedelta(hours=3, minutes=20, seconds=30)
    )
    client.force_login(owner.user)
    client.post(
        reverse("governance:identity_edit", args=[bot.pk]),
        {"name": "billing-bot", "team": "Payments", "credential_type": "static_secret", "secret_location": "ci_cd"},
    )
    # when
    body = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    with time_machine.travel(timezone.now() + timedelta(hours=4)):
        client.force_login(owner.user)  # the idle session timed out meanwhile
        later = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    # then
    assert "Mona Manager" in body and "Olu Owner" in body
    assert "expires in 3 h 20 min" in body or "3 h 20 min" in body
    assert "1 in force" in body and "0 in force" in later and "status-expired" in later
    assert "team" in body and "secret location" in body  # the history names what changed
    assert "identity.updated" in body


def test_owner_registers_a_machine_identity_they_own_but_not_for_someone_else(client, owner):
    client.force_login(owner.user)
    assert client.get(reverse("governance:identity_create")).status_code == 200
    response = client.post(
        reverse("governance:identity_create"),
        {"kind": "api_key", "name": "deploy-key", "owner": owner.user.username, "credential_type": "static_secret"},
        follow=True,
    )
    created = Identity.objects.get(name="deploy-key")
    assert created.owner == owner and response.redirect_chain[-1][0].endswith(f"/{created.pk}/")
    assert AuditEvent.objects.filter(action="identity.created").count() == 1
    someone = PersonFactory()
    response = client.post(
        reverse("governance:identity_create"), {"kind": "api_key", "name": "their-key", "owner": someone.user.username}
    )
    # The form starts with themselves as the owner; naming someone else is an error beside the field.
    assert response.status_code == 400
    assert "only register an identity you will own yourself" in response.context["form"].errors["owner"][0]
    assert client.get(reverse("governance:identity_create")).context["form"]["owner"].value() == owner.user.username
    assert not Identity.objects.filter(name="their-key").exists()


def test_an_owner_cannot_type_in_when_a_machine_was_last_used(client, owner, bot):
    client.force_login(owner.user)
    form = client.get(reverse("governance:identity_edit", args=[bot.pk])).context["form"]
    assert "last_used_at" not in form.fields
    with pytest.raises(ValidationFailed, match="comes from the systems"):
        identities.identity_update(identity_id=bot.pk, actor=owner.user, changes={"last_used_at": timezone.now()})


def test_a_login_without_an_identity_cannot_register_one(client, make_user):
    client.force_login(make_user(roles=("requester",)))
    assert client.get(reverse("governance:identity_create")).status_code == 403


def test_admin_registers_a_machine_for_anyone_and_missing_owner_is_shown_beside_the_field(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("governance:identity_create"), {"kind": "workload", "name": "etl"})
    assert response.status_code == 400
    assert response.context["form"].errors["owner"] == ["Required for non-human identities."]
    assert not Identity.objects.filter(name="etl").exists()
    someone = PersonFactory()
    client.post(reverse("governance:identity_create"), {"kind": "workload", "name": "etl", "owner": someone.email})
    assert Identity.objects.get(name="etl").owner == someone


def test_owner_suspends_and_reactivates_with_a_reason(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(reverse("governance:identity_suspend", args=[bot.pk]), {"reason": "leaked"}, follow=True)
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.SUSPENDED and b"suspended" in response.content
    client.post(reverse("governance:identity_reactivate", args=[bot.pk]), {"reason": "rotated"})
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.ACTIVE
    assert client.get(reverse("governance:identity_suspend", args=[bot.pk])).status_code == 405


def test_offboarding_page_lists_transfers_and_orphans(client, admin_user):
    # given a person who owns one bot with a backup owner and one without
    leaver = PersonFactory(name="Lee Leaver")
    moving = MachineFactory(name="moving-bot", owner=leaver, backup_owner=PersonFactory(name="Bea Backup"))
    orphan = MachineFactory(name="orphan-bot", owner=leaver)
    client.force_login(admin_user)
    # when
    page = client.get(reverse("governance:identity_offboard", args=[leaver.pk]))
    # then
    assert page.context["transfers"] == [moving] and page.context["orphans"] == [orphan]
    assert "Bea Backup" in page.content.decode()
    refused = client.post(reverse("governance:identity_offboard", args=[leaver.pk]), {"reason": ""})
    assert refused.status_code == 400 and refused.context["form"].errors["reason"]
    leaver.refresh_from_db()
    assert leaver.status == IdentityStatus.ACTIVE
    client.post(reverse("governance:identity_offboard", args=[leaver.pk]), {"reason": "left the company"})
    moving.refresh_from_db()
    orphan.refresh_from_db()
    assert moving.owner.name == "Bea Backup" and orphan.owner == leaver
    assert AuditEvent.objects.filter(action="identity.offboarded").count() == 1


def test_system_owner_edits_and_retires_their_system(client, owner):
    system = SystemFactory(owner=owner)
    entitlement = EntitlementFactory(system=system)
    client.force_login(owner.user)
    assert client.get(reverse("governance:system_edit", args=[system.pk])).status_code == 200
    client.post(
        reverse("governance:system_edit", args=[system.pk]),
        {"name": "Ledger", "description": "Money", "owner": owner.user.username, "criticality": "high"},
    )
    system.refresh_from_db()
    assert system.name == "Ledger" and system.criticality == "high"
    client.post(reverse("governance:system_retire", args=[system.pk]), {"reason": "replaced"})
    system.refresh_from_db()
    entitlement.refresh_from_db()
    assert system.status == entitlement.status == LifecycleStatus.RETIRED


def test_others_cannot_edit_or_retire_a_system_or_entitlement(client, stranger):
    entitlement = EntitlementFactory()
    client.force_login(stranger.user)
    # A requester may not even see someone else's system: 404, not a 403 that tells it exists.
    assert client.get(reverse("governance:system_edit", args=[entitlement.system_id])).status_code == 404
    assert (
        client.post(reverse("governance:system_retire", args=[entitlement.system_id]), {"reason": "x"}).status_code
        == 404
    )
    assert client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).status_code == 403
    assert (
        client.post(reverse("governance:entitlement_retire", args=[entitlement.pk]), {"reason": "x"}).status_code == 403
    )
    entitlement.refresh_from_db()
    assert entitlement.status == LifecycleStatus.ACTIVE


def test_entitlement_edit_shows_the_services_stage_error_beside_the_field(client, owner):
    entitlement = EntitlementFactory(owner=owner)
    client.force_login(owner.user)
    assert client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).status_code == 200
    data = {
        "name": entitlement.name,
        "owner": owner.user.username,
        "risk_tier": "high",
        "review_cadence_days": 90,
        "approval_stages": '[{"approver": "the_moon"}]',
        "allowed_identity_kinds": ["human"],
    }
    response = client.post(reverse("governance:entitlement_edit", args=[entitlement.pk]), data)
    assert response.status_code == 400 and "unknown approver" in str(response.context["form"].errors["approval_stages"])
    entitlement.refresh_from_db()
    assert entitlement.risk_tier == "low"
    data["approval_stages"] = '[{"approver": "entitlement_owner"}, {"approver": "system_owner"}]'
    data["max_duration_hours"] = "8"
    client.post(reverse("governance:entitlement_edit", args=[entitlement.pk]), data)
    entitlement.refresh_from_db()
    assert entitlement.risk_tier == "high" and len(entitlement.approval_stages) == 2
    assert entitlement.max_duration == timedelta(hours=8)
    body = client.get(reverse("governance:entitlement_detail", args=[entitlement.pk])).content.decode()
    assert "8 hours" in body and "System owner" in body


def test_grant_revoke_and_removal_confirmation(client, owner, bot):
    # given a grant on a system the owner runs
    grant = GrantFactory(identity=bot, entitlement=EntitlementFactory(system=SystemFactory(owner=owner)))
    client.force_login(owner.user)
    assert b"Revoke this access" in client.get(reverse("governance:grant_detail", args=[grant.pk])).content
    # when revoked, then confirmed removed
    missing = client.post(reverse("governance:grant_revoke", args=[grant.pk]), {"reason": ""})
    assert missing.status_code == 400 and missing.context["reason_form"].errors["reason"]  # said beside the field
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE  # no reason, nothing happened
    client.post(reverse("governance:grant_revoke", args=[grant.pk]), {"reason": "not needed"})
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
    assert b"Confirm removed" in client.get(reverse("governance:grant_detail", args=[grant.pk])).content
    client.post(reverse("governance:grant_confirm_revoked", args=[grant.pk]))
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED


def test_a_requester_cannot_see_or_revoke_someone_elses_grant(client, stranger):
    grant = GrantFactory()
    client.force_login(stranger.user)
    assert client.get(reverse("governance:grant_detail", args=[grant.pk])).status_code == 404
    assert client.post(reverse("governance:grant_revoke", args=[grant.pk]), {"reason": "x"}).status_code == 404
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE


def test_dashboard_shows_my_identities_and_findings(client, owner, bot):
    now = timezone.now()
    Finding.objects.create(
        key=f"stale:{bot.pk}", kind="stale", identity=bot, owner_to_act=owner, first_seen_at=now, last_seen_at=now
    )
    client.force_login(owner.user)
    body = client.get(reverse("dashboard")).content.decode()
    assert "My identities" in body and "billing-bot" in body and "Stale (unused)" in body


def test_identity_edit_rejects_bad_input_beside_the_field_and_writes_nothing(client, owner, bot):
    # given
    client.force_login(owner.user)
    # when
    response = client.post(
        reverse("governance:identity_edit", args=[bot.pk]),
        {"name": "renamed", "email": "not-an-email", "rotation_period_days": "-3"},
    )
    # then
    assert response.status_code == 400
    assert set(response.context["form"].errors) >= {"email", "rotation_period_days"}
    bot.refresh_from_db()
    assert bot.name == "billing-bot"
    assert not AuditEvent.objects.filter(action="identity.updated").exists()


def test_a_person_edit_form_has_no_credential_fields(client, admin_user, owner):
    client.force_login(admin_user)
    form = client.get(reverse("governance:identity_edit", args=[owner.pk])).context["form"]
    assert "credential_type" not in form.fields and "manager" in form.fields


def test_saving_the_edit_form_unchanged_keeps_every_value(client, owner, bot):
    # given the form as the browser shows it (datetime-local inputs carry their values)
    client.force_login(owner.user)
    form = client.get(reverse("governance:identity_edit", args=[bot.pk])).context["form"]
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items() if v not in (False,)}
    for name in {"last_rotated_at", "last_used_at"} & set(form.fields):
        data[name] = form.fields[name].widget.format_value(form[name].value())
    # when posted back unchanged
    client.post(reverse("governance:identity_edit", args=[bot.pk]), data)
    # then nothing was lost
    refreshed = Identity.objects.get(pk=bot.pk)
    assert refreshed.last_used_at is not None and refreshed.rotation_period_days == bot.rotation_period_days
    assert abs(refreshed.last_rotated_at - bot.last_rotated_at) < timedelta(minutes=1)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query", ["?sort=-last_used_at", "?kind=service_account&sort=-last_used_at", "?sort=last_used_at"]
)
def test_the_lists_sorted_by_last_use_read_page_one_off_an_index(client, admin_user, query):
    # Sorted by last use, page 1 sorted every identity (of the kind): 6 ms for 20,000 service accounts.
    # It walks the (last_used_at, id) index instead; only ties on the time are sorted (Incremental Sort).
    for days in range(6):
        MachineFactory(kind="service_account", last_used_at=timezone.now() - timedelta(days=days))
    client.force_login(admin_user)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("governance:identity_list") + query).status_code == 200
    (keys,) = [
        q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "governance_identity"."id" AS "pk" FROM')
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {keys}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "gov_identity_last_used_idx" in plan, plan
    assert all("Incremental Sort" in line for line in plan.splitlines() if "Sort  " in line or "-> Sort" in line), plan
