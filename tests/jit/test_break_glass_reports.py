"""The break-glass report: activations over a period with their reviews, filtered, sorted, paginated at a
constant query count, and the same rows as a streamed CSV."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from jit.choices import ReviewOutcome
from jit.services.break_glass_reviews import break_glass_review_record
from tests.factories.governance import EntitlementFactory, SystemFactory

from .break_glass_helpers import REVIEWERS, activation_row, eligibility_for, person

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
REPORT = reverse("jit:break_glass_report")
CSV = reverse("jit:break_glass_report_csv")


@pytest.fixture
def world(db):
    """Three activations: a reviewed real one last week, an unreviewed overdue one, and a reviewed drill;
    on two systems."""
    holder, other = person("Holly"), person("Hank")
    reviewer = person("Rita", REVIEWERS)
    db_root = EntitlementFactory(name="db-root", break_glass_eligible=True, system=SystemFactory(name="Ledger DB"))
    k8s = EntitlementFactory(name="cluster-admin", break_glass_eligible=True, system=SystemFactory(name="K8s prod"))
    week_ago = NOW - timedelta(days=7)
    with time_machine.travel(week_ago, tick=False):
        reviewed = activation_row(
            eligibility_for(holder, entitlement=db_root), at=week_ago, incident_reference="INC-100", ended=True
        )
    with time_machine.travel(week_ago + timedelta(hours=3), tick=False):
        break_glass_review_record(
            activation_id=reviewed.pk, actor=reviewer.user, outcome=ReviewOutcome.NOT_JUSTIFIED, notes="No outage."
        )
    two_days = NOW - timedelta(days=2)
    unreviewed = activation_row(
        eligibility_for(other, entitlement=k8s),
        at=two_days,
        duration=timedelta(minutes=30),
        incident_reference="INC-200",
        ended=True,
    )
    drill = activation_row(
        eligibility_for(holder, entitlement=k8s),
        at=NOW - timedelta(hours=5),
        incident_reference="DRILL-1",
        is_drill=True,
    )
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        break_glass_review_record(activation_id=drill.pk, actor=reviewer.user, outcome="justified", notes="")
    return {
        "reviewed": reviewed,
        "unreviewed": unreviewed,
        "drill": drill,
        "db_root": db_root,
        "k8s": k8s,
        "reviewer": reviewer,
    }


@pytest.fixture
def auditor_client(client):
    client.force_login(person("Audrey", roles=["auditor"]).user)
    return client


def incidents(response) -> set[str]:
    html = response.content.decode()
    return {ref for ref in ("INC-100", "INC-200", "DRILL-1") if f">{ref}</a>" in html}


def csv_rows(response) -> list[dict]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_report_shows_every_activation_and_flags_the_unreviewed(auditor_client, world):
    page = auditor_client.get(REPORT)
    assert page.status_code == 200
    assert incidents(page) == {"INC-100", "INC-200", "DRILL-1"}
    html = page.content.decode()
    assert "Not reviewed · overdue" in html  # INC-200: due a day after it, two days ago
    assert 'class="flagged"' in html
    assert "Not justified" in html and ">Drill<" in html
    assert "1</strong> not reviewed" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"reviewed": "no"}, {"INC-200"}),
        ({"reviewed": "yes"}, {"INC-100", "DRILL-1"}),
        ({"outcome": "not_justified"}, {"INC-100"}),
        ({"drill": "yes"}, {"DRILL-1"}),
        ({"drill": "no"}, {"INC-100", "INC-200"}),
        ({"since": str((NOW - timedelta(days=3)).date())}, {"INC-200", "DRILL-1"}),
        ({"until": str((NOW - timedelta(days=6)).date())}, {"INC-100"}),
    ],
)
def test_filters(auditor_client, world, query, expected):
    assert incidents(auditor_client.get(REPORT, query)) == expected
    assert {row["incident reference"] for row in csv_rows(auditor_client.get(CSV, query))} == expected


def test_filter_by_system_and_entitlement(auditor_client, world):
    system = world["k8s"].system
    assert incidents(auditor_client.get(REPORT, {"system": system.pk})) == {"INC-200", "DRILL-1"}
    assert incidents(auditor_client.get(REPORT, {"entitlement": world["db_root"].pk})) == {"INC-100"}
    refused = auditor_client.get(REPORT, {"system": system.pk, "entitlement": world["db_root"].pk})
    assert refused.status_code == 400 and "not in that system" in refused.content.decode()


def test_a_period_ending_before_it_starts_is_refused_beside_the_field(auditor_client, world):
    query = {"since": "2026-03-02", "until": "2026-03-01"}
    page = auditor_client.get(REPORT, query)
    assert page.status_code == 400 and 'id="id_until_error"' in page.content.decode()
    assert auditor_client.get(CSV, query).status_code == 400


def test_the_csv_holds_what_an_auditor_needs(auditor_client, world):
    rows = {row["incident reference"]: row for row in csv_rows(auditor_client.get(CSV))}
    reviewed = rows["INC-100"]
    assert reviewed["holder"] == "Holly" and reviewed["system"] == "Ledger DB" and reviewed["entitlement"] == "db-root"
    assert reviewed["review outcome"] == "Not justified" and reviewed["review notes"] == "No outage."
    assert reviewed["reviewer"] == "rita" and reviewed["time to review (hours)"] == "3.0"
    assert reviewed["duration (minutes)"] == "60" and reviewed["drill"] == ""
    assert rows["INC-200"]["review outcome"] == "UNREVIEWED (overdue)"
    assert rows["INC-200"]["duration (minutes)"] == "30" and rows["INC-200"]["reviewer"] == ""
    assert rows["DRILL-1"]["drill"] == "drill" and rows["DRILL-1"]["review outcome"] == "Justified"
    assert rows["DRILL-1"]["ended at"] == (NOW - timedelta(hours=4)).isoformat()
    # the export itself is on the record, with its filters
    export = AuditEvent.objects.filter(action=AuditAction.EXPORT_DOWNLOADED).latest("seq")
    assert export.data["what"] == "break_glass_activations"


def test_every_column_sorts(auditor_client, world):
    from jit.views_break_glass_reviews import REPORT_SORTS

    for key in REPORT_SORTS:
        for sort in (key, f"-{key}"):
            assert auditor_client.get(REPORT, {"sort": sort}).status_code == 200, sort
    newest_first = auditor_client.get(REPORT, {"sort": "-activated"}).content.decode()
    assert newest_first.index("DRILL-1") < newest_first.index("INC-200") < newest_first.index("INC-100")


@pytest.mark.parametrize("role", ["requester", "approver", "owner"])
def test_only_auditors_and_admins_read_the_report(client, world, role):
    client.force_login(person(f"Someone-{role}", roles=[role]).user)
    assert client.get(REPORT).status_code == 403
    assert client.get(CSV).status_code == 403


def test_an_admin_reads_the_report(client, world):
    client.force_login(person("Ada", roles=["admin"]).user)
    assert incidents(client.get(REPORT)) == {"INC-100", "INC-200", "DRILL-1"}


def test_the_report_costs_the_same_for_three_rows_or_many(auditor_client, world):
    with CaptureQueriesContext(connection) as few:
        auditor_client.get(REPORT)
    for i in range(12):
        holder = person(f"Extra{i}")
        entitlement = EntitlementFactory(break_glass_eligible=True)
        activation = activation_row(
            eligibility_for(holder, entitlement=entitlement),
            at=NOW - timedelta(days=3, minutes=i),
            is_drill=i % 3 == 0,
            ended=i % 2 == 0,
        )
        if i % 2 == 0:
            break_glass_review_record(
                activation_id=activation.pk, actor=world["reviewer"].user, outcome="follow_up", notes="Check."
            )
    with CaptureQueriesContext(connection) as many:
        page = auditor_client.get(REPORT)
    assert page.content.decode().count("<tr") >= 15
    assert len(few) == len(many), (len(few), len(many))


def test_seed_demo_includes_break_glass():
    """`seed_demo`: eligibility, one reviewed and one unreviewed activation (live, made by the service),
    and a scheduled drill; a second run adds nothing."""
    from io import StringIO

    from django.core.management import call_command

    from jit.models import BreakGlassActivation, BreakGlassDrill, BreakGlassEligibility

    out = StringIO()
    call_command("seed_demo", "--identities", "40", stdout=out)
    assert "Demo break-glass: 2 eligibilities, 1 reviewed and 1 unreviewed" in out.getvalue()
    assert BreakGlassEligibility.objects.count() == 2
    reviewed = BreakGlassActivation.objects.exclude(outcome="").get()
    assert reviewed.outcome == ReviewOutcome.JUSTIFIED and reviewed.reviewed_by.username == "owner"
    live = BreakGlassActivation.objects.get(outcome="")
    assert live.activated_by.username == "requester" and live.step_up == "password"
    assert live.grant.status == "active"
    assert BreakGlassDrill.objects.get().status == "scheduled"
    call_command("seed_demo", "--identities", "40", stdout=StringIO())
    assert BreakGlassActivation.objects.count() == 2 and BreakGlassDrill.objects.count() == 1
