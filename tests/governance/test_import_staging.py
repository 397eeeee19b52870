"""Identity imports on PostgreSQL go through COPY and set-based SQL (`governance.imports.staging`, issue 17
item 4): they must write the same rows, history rows and audit events as the ORM path they replace."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from governance.imports import staging
from governance.models import Identity
from governance.services.imports import ImportConflict, import_apply
from tests.factories.governance import PersonFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,  # the staged path is PostgreSQL's
]

HEADER = (
    "external_id,name,kind,status,email,team,owner_external_id,backup_owner_external_id,manager_external_id,"
    "credential_type,secret_location,last_rotated_at,rotation_period_days,last_used_at,may_self_request"
)
FIRST = "\n".join(
    [
        HEADER,
        "p-1,Ada Lovelace,human,active,ada@example.org,Platform,,,,,,,,,false",
        "p-2,Grace Hopper,human,active,grace@example.org,Platform,,,p-1,,,,,,",
        "svc-1,billing-sync,service_account,active,,Payments,p-3,p-2,,static_secret,secrets_manager,2024-05-01T10:00:00Z,90,,false",
        "p-3,Alan Turing,human,active,alan@example.org,Payments,,,p-1,,,,,,",
        "agent-1,triage-bot,ai_agent,active,,Support,p-2,,,short_lived_token,secrets_manager,,,,true",
    ]
)
# Changes a team, hands svc-1 to a person the file creates, and leaves p-1 and agent-1 alone.
SECOND = "\n".join(
    [
        HEADER,
        "p-1,Ada Lovelace,human,active,ada@example.org,Platform,,,,,,,,,false",
        "p-2,Grace Hopper,human,active,grace@example.org,Research,,,p-1,,,,,,",
        "p-4,Edsger Dijkstra,human,active,edsger@example.org,Research,,,p-1,,,,,,",
        "svc-1,billing-sync,service_account,active,,Payments,p-4,p-2,,static_secret,secrets_manager,2024-05-01T10:00:00Z,90,,false",
        "p-3,Alan Turing,human,active,alan@example.org,Payments,,,p-1,,,,,,",
        "agent-1,triage-bot,ai_agent,active,,Support,p-2,,,short_lived_token,secrets_manager,,,,true",
    ]
)
SKIPPED = {"id", "history_id", "history_date", "created_at", "updated_at", "owner_id", "backup_owner_id", "manager_id"}


def run(text: str):
    return import_apply(
        actor=Actor.system(), entity="identities", fmt="csv", content=text.encode(), file_name="people.csv"
    )


def written() -> dict:
    """What the imports left, by external id (ids, which differ between runs, as external ids)."""
    keys = dict(Identity.objects.values_list("id", "external_id"))

    def row(values: dict) -> dict:
        kept = {k: v for k, v in values.items() if k not in SKIPPED}
        kept.update({name: keys.get(values[name]) for name in ("owner_id", "backup_owner_id", "manager_id")})
        return kept

    history = [
        row(values)
        for values in Identity.history.order_by("history_id").values()  # in the order they were written
    ]
    identities = {values["external_id"]: row(values) for values in Identity.objects.values()}
    return {"identities": identities, "history": sorted(history, key=str)}


def events_since(seq: int) -> list:
    """The import's events after `seq`: action, target and which fields they name (ids differ per run)."""
    return sorted(
        (event.action, event.target_label, sorted((event.data or {}).get("after", {})))
        for event in AuditEvent.objects.filter(seq__gt=seq).exclude(action=AuditAction.IMPORT_APPLIED)
    )


def last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def both_imports() -> tuple[dict, list]:
    start = last_seq()
    first, second = run(FIRST), run(SECOND)
    assert (first.created, second.created, second.updated, second.unchanged) == (5, 1, 2, 3)
    return written(), events_since(start)


def test_the_staged_path_writes_what_the_orm_path_writes(monkeypatch):
    staged, staged_events = both_imports()
    with connection.cursor() as cursor:  # the same inventory again, empty (the audit trail stays)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the pending foreign key checks first
        cursor.execute("TRUNCATE governance_identity, governance_historicalidentity CASCADE")

    monkeypatch.setattr(staging, "STAGED", frozenset())
    orm, orm_events = both_imports()

    assert staged["identities"] == orm["identities"]
    assert staged["history"] == orm["history"]
    assert staged_events == orm_events and len(staged_events) == 8


def test_history_rows_carry_the_import_s_date_reason_and_type():
    run(FIRST)
    run(SECOND)

    rows = list(Identity.history.values_list("external_id", "history_type", "history_change_reason", "history_date"))
    created = [r for r in rows if r[1] == "+"]
    changed = sorted(r[0] for r in rows if r[1] == "~")
    assert len(created) == 6 and changed == ["p-2", "svc-1"]
    assert {r[2] for r in rows} == {"import people.csv"}
    assert len({r[3] for r in created if r[0] != "p-4"}) == 1  # one moment per import
    svc = Identity.objects.get(external_id="svc-1")
    latest = Identity.history.filter(id=svc.pk).latest("history_id")
    assert latest.owner_id == Identity.objects.get(external_id="p-4").pk
    assert latest.updated_at == svc.updated_at > svc.created_at
    assert svc.created_at.tzinfo is not None and svc.created_at > datetime(2020, 1, 1, tzinfo=UTC)


def test_a_key_taken_while_writing_is_a_conflict_named_by_line(monkeypatch):
    # given a row the plan counts as new, created by someone else just before the write
    original = staging.create_with_history

    def racing(objs, model, **kwargs):
        PersonFactory(external_id="p-1")
        return original(objs, model, **kwargs)

    monkeypatch.setattr(staging, "create_with_history", racing)

    with pytest.raises(ImportConflict) as caught:
        run(FIRST)

    # then nothing of the file is written, and the row is named
    assert [(e.line, e.key) for e in caught.value.row_errors] == [(2, "p-1")]
    assert not Identity.objects.exists()
