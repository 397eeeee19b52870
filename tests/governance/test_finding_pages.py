"""The fix pages of a finding and the exception register: permissions (IDOR), errors beside fields,
messages, filters and constant query counts. Ref: #16 Owner 2."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.choices import FindingExceptionStatus, FindingKind, FindingStatus, Severity
from governance.models import Finding, FindingException
from governance.services.finding_fixes import finding_accept_risk
from portal.navigation import nav_for
from tests.factories.governance import MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

REGISTER = "/inventory/findings/exceptions/"


def fix_url(finding: Finding, action: str = "accept") -> str:
    return reverse("governance:finding_fix", args=[finding.pk, action])


def stale(machine, *, kind=FindingKind.STALE, owner_to_act=None) -> Finding:
    now = timezone.now()
    return Finding.objects.create(
        key=f"{kind}:{machine.pk}",
        kind=kind,
        severity=Severity.MEDIUM,
        identity=machine,
        owner_to_act=owner_to_act or machine.owner,
        details={"subject": f"Service account {machine.name}", "reason": "Not used for a long time."},
        first_seen_at=now - timedelta(days=1),
        last_seen_at=now,
    )


@pytest.fixture
def mine(owner, bot):
    return stale(bot)


def in_ten_days() -> str:
    return (timezone.localdate() + timedelta(days=10)).isoformat()


def test_url_names_are_stable(mine):
    assert fix_url(mine) == f"/inventory/findings/{mine.pk}/fix/accept/"
    assert reverse("governance:finding_exception_list") == REGISTER


#
# Who may fix (IDOR)
#
def test_the_owner_gets_the_form_and_accepts_the_risk(client, owner, bot, mine):
    client.force_login(owner.user)
    back = reverse("governance:identity_detail", args=[bot.pk])

    form = client.get(fix_url(mine), {"next": back})
    assert form.status_code == 200 and b"Accept the risk" in form.content
    assert b'name="until"' in form.content and b'type="date"' in form.content

    response = client.post(
        fix_url(mine), {"reason": "Batch job runs yearly", "until": in_ten_days(), "next": back}, follow=True
    )

    assert response.redirect_chain[-1][0] == back
    assert "exception register" in response.content.decode()
    mine.refresh_from_db()
    assert mine.status == FindingStatus.ACCEPTED
    exception = FindingException.objects.get(finding=mine)
    assert exception.expires_at.date() == timezone.localdate() + timedelta(days=10)
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_RISK_ACCEPTED).count() == 1


def test_errors_show_beside_their_fields_and_nothing_is_written(client, owner, mine):
    client.force_login(owner.user)
    response = client.post(fix_url(mine), {"reason": "", "until": ""})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_reason_error"' in page and 'id="id_until_error"' in page
    assert not FindingException.objects.exists()
    mine.refresh_from_db()
    assert mine.status == FindingStatus.OPEN


def test_a_past_date_is_refused_beside_the_date(client, owner, mine):
    client.force_login(owner.user)
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    response = client.post(fix_url(mine), {"reason": "fine", "until": yesterday})
    assert response.status_code == 400 and 'id="id_until_error"' in response.content.decode()
    assert not FindingException.objects.exists()


def test_someone_who_cannot_see_the_finding_gets_not_found(client, mine):
    # a requester sees only the findings they must act on: another's is not found, by GET or POST
    client.force_login(PersonFactory().user)
    assert client.get(fix_url(mine)).status_code == 404
    assert client.post(fix_url(mine), {"reason": "mine now", "until": in_ten_days()}).status_code == 404
    assert not FindingException.objects.exists()


@pytest.mark.parametrize("role", ["approver", "owner", "auditor"])
def test_a_reader_who_does_not_own_it_is_refused(client, mine, role):
    # an approver, another owner, an auditor see every finding but fix none of another's
    client.force_login(with_role(PersonFactory(), role).user)
    assert client.get(fix_url(mine)).status_code == 403
    assert client.post(fix_url(mine), {"reason": "x", "until": in_ten_days()}).status_code == 403
    mine.refresh_from_db()
    assert mine.status == FindingStatus.OPEN and not FindingException.objects.exists()


def test_the_backup_owner_and_an_admin_may_fix(client, admin_user, owner, bot, mine):
    backup = PersonFactory()
    bot.backup_owner = backup
    bot.save(update_fields=["backup_owner"])
    client.force_login(backup.user)
    assert client.get(fix_url(mine)).status_code == 200
    client.force_login(admin_user)
    assert client.get(fix_url(mine)).status_code == 200


def test_unknown_fixes_and_fixes_of_another_kind_are_not_found(client, owner, mine):
    client.force_login(owner.user)
    assert client.get(fix_url(mine, "delete-everything")).status_code == 404
    assert client.get(fix_url(mine, "mark-rotated")).status_code == 404  # a stale finding is not rotated
    assert client.get(fix_url(mine, "adopt")).status_code == 405  # drift fixes are POST only


def test_a_finding_fixed_meanwhile_says_so(client, owner, mine):
    Finding.objects.filter(pk=mine.pk).update(status=FindingStatus.RESOLVED)
    client.force_login(owner.user)
    response = client.post(fix_url(mine), {"reason": "x", "until": in_ten_days()}, follow=True)
    assert "resolved already" in response.content.decode()
    assert not FindingException.objects.exists()


#
# The findings page and the identity page offer the fixes
#
def test_the_findings_page_offers_the_owner_their_fixes_and_nobody_elses(client, owner, mine):
    other = stale(MachineFactory(name="someone-elses"), owner_to_act=owner)
    client.force_login(owner.user)
    page = client.get("/inventory/findings/").content.decode()
    assert fix_url(mine) in page
    assert fix_url(other) not in page  # they must act on it, but do not own the identity


def test_the_identity_page_offers_the_fixes(client, owner, bot, mine):
    client.force_login(owner.user)
    page = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    assert fix_url(mine) in page


def test_the_findings_page_with_fixes_keeps_a_constant_query_count(client, owner, count_queries):
    with_role(owner, "approver")  # reads the inventory: sees every finding on the page
    stale(MachineFactory(owner=owner))
    client.force_login(owner.user)
    one = count_queries(lambda: client.get("/inventory/findings/"))
    for i in range(19):
        stale(MachineFactory(owner=owner if i % 2 else PersonFactory()))
    twenty = count_queries(lambda: client.get("/inventory/findings/"))
    assert one == twenty, f"findings page with fixes: {one} queries with 1 row, {twenty} with 20"


#
# The exception register
#
def accept(finding: Finding, user, reason="Known and watched", days=10):
    return finding_accept_risk(
        finding_id=finding.pk, actor=user, reason=reason, until=timezone.now() + timedelta(days=days)
    )


def test_auditors_read_every_exception_with_who_why_and_until(client, auditor, owner, mine):
    accept(mine, owner.user)
    other = MachineFactory(name="other-bot")
    accept(stale(other), other.owner.user, reason="Other team's call")
    client.force_login(auditor)
    response = client.get(REGISTER)
    page = response.content.decode()
    assert len(response.context["page_obj"]) == 2
    assert "Known and watched" in page and "Other team&#x27;s call" in page and "Olu Owner" in page
    assert 'aria-sort="none"' in page


def test_owners_read_only_their_own_and_others_nothing(client, owner, mine):
    accept(mine, owner.user)
    other = MachineFactory(name="other-bot")
    accept(stale(other), other.owner.user, reason="Other team's call")

    client.force_login(owner.user)
    assert [e.finding_id for e in client.get(REGISTER).context["page_obj"]] == [mine.pk]
    client.force_login(PersonFactory().user)
    response = client.get(REGISTER)
    assert response.status_code == 200 and len(response.context["page_obj"]) == 0
    assert b"No accepted risks" in response.content


def test_the_register_filters_by_status_kind_text_and_who(client, auditor, owner, mine):
    exception = accept(mine, owner.user)
    FindingException.objects.filter(pk=exception.pk).update(status=FindingExceptionStatus.EXPIRED)
    client.force_login(auditor)
    assert len(client.get(REGISTER).context["page_obj"]) == 0  # active by default
    assert len(client.get(REGISTER, {"status": "expired"}).context["page_obj"]) == 1
    assert len(client.get(REGISTER, {"status": "all", "kind": FindingKind.ORPHANED}).context["page_obj"]) == 0
    assert len(client.get(REGISTER, {"status": "all", "q": "watched"}).context["page_obj"]) == 1
    assert len(client.get(REGISTER, {"status": "all", "accepted_by": "olu"}).context["page_obj"]) == 1
    assert len(client.get(REGISTER, {"status": "all", "accepted_by": "zed"}).context["page_obj"]) == 0
    assert len(client.get(REGISTER, {"status": "all", "sort": "-until"}).context["page_obj"]) == 1


def test_the_register_keeps_a_constant_query_count(client, auditor, count_queries):
    first = MachineFactory()
    accept(stale(first), first.owner.user)
    client.force_login(auditor)
    one = count_queries(lambda: client.get(REGISTER))
    for _ in range(19):
        machine = MachineFactory()
        accept(stale(machine), machine.owner.user)
    twenty = count_queries(lambda: client.get(REGISTER))
    assert len(client.get(REGISTER).context["page_obj"]) == 20
    assert one == twenty, f"exception register: {one} queries with 1 row, {twenty} with 20"


def test_the_register_is_in_the_navigation_of_auditors_admins_and_owners(auditor, owner, requester):
    def has(user):
        return "governance:finding_exception_list" in [item.url_name for item in nav_for(user)]

    assert has(auditor) and has(owner.user)
    assert not has(requester)


def test_a_next_address_on_another_site_is_ignored(client, owner, mine):
    client.force_login(owner.user)
    page = client.get(fix_url(mine), {"next": "javascript:alert(1)"}).content.decode()
    assert "javascript:" not in page
    response = client.post(fix_url(mine), {"reason": "ok", "until": in_ten_days(), "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("governance:finding_list")
