"""A re-import finds its unchanged rows without parsing them (issue 17, item 4): a row whose cells are what
the export writes for the stored row is unchanged; any other row goes through the planner as before."""

import csv
import io
from collections import Counter
from datetime import UTC, datetime

import pytest

from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from governance.choices import CredentialType
from governance.imports import cells
from governance.imports.exports import csv_chunks
from governance.models import Identity
from governance.services.imports import ImportRejected, import_apply
from tests.factories.governance import MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

PARSERS = ("text", "choice", "email", "moment", "integer", "boolean")


@pytest.fixture
def parses(monkeypatch) -> Counter:
    """How often each cell parser runs (the planner's parsers call them through the module)."""
    calls: Counter = Counter()
    for name in PARSERS:
        original = getattr(cells, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(cells, name, counted)
    return calls


@pytest.fixture
def inventory() -> list[Identity]:
    """People and machines as the portal makes them: one without an external id, a name a spreadsheet
    would run, times with microseconds, both kinds of credentials."""
    boss = PersonFactory(external_id="p-boss", name="Ada Boss", team="Platform")
    people = [boss, PersonFactory(external_id=None, name="-Dash Person", manager=boss)]
    people += [PersonFactory(external_id=f"p-{i}", name=f"Person {i}", team="Research", manager=boss) for i in range(8)]
    used = datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
    machines = [
        MachineFactory(
            external_id=f"svc-{i}",
            name=f"@svc-{i}" if i == 0 else f"svc {i}",
            owner=people[i % len(people)],
            backup_owner=people[(i + 1) % len(people)],
            credential_type=CredentialType.STATIC_SECRET if i % 2 else CredentialType.SHORT_LIVED_TOKEN,
            rotation_period_days=30 + i % 3,
            last_rotated_at=used.replace(day=1 + i),
            last_used_at=used if i % 3 else None,
            may_self_request=bool(i % 2),
        )
        for i in range(30)
    ]
    return people + machines


def export() -> str:
    return "".join(csv_chunks("identities"))


def run(text: str, actor=None):
    return import_apply(
        actor=actor or Actor.system(), entity="identities", fmt="csv", content=text.encode(), file_name="f.csv"
    )


def edited(text: str, key: str, **cells_by_column: str) -> str:
    """The CSV `text` with the row keyed `key` given other cells."""
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        if row["external_id"] == key:
            row.update(cells_by_column)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


FEW_VALUES = ("kind", "status", "credential_type", "secret_location", "rotation_period_days", "may_self_request")


def distinct_cells(text: str, columns) -> set[tuple[str, str]]:
    return {(column, row[column]) for row in csv.DictReader(io.StringIO(text)) for column in columns}


def test_an_export_reimported_is_all_unchanged_and_parses_no_row(inventory, parses):
    text = export()
    events, history = AuditEvent.objects.count(), Identity.history.count()

    result = run(text)

    assert (result.created, result.updated, result.unchanged) == (0, 0, len(inventory))
    assert (AuditEvent.objects.count(), Identity.history.count()) == (events, history)
    # No text, address or time is parsed; a column of few values (kind, status...) once per value.
    assert parses["text"] == parses["email"] == parses["moment"] == 0
    assert sum(parses.values()) <= len(distinct_cells(text, FEW_VALUES)) < len(inventory)


def test_the_same_values_spelled_otherwise_are_unchanged_too_parsed_once_per_spelling(inventory, parses):
    # given a file that writes times with "Z", booleans in capitals and people's credentials left empty
    text = export().replace("+00:00", "Z").replace(",true", ",TRUE")
    for person in inventory[:10]:
        text = edited(text, person.external_id or f"portal:{person.pk}", may_self_request="")

    result = run(text)

    assert (result.updated, result.unchanged) == (0, len(inventory))
    assert parses["text"] == parses["moment"] == 0
    assert sum(parses.values()) <= len(distinct_cells(text, FEW_VALUES)) < len(inventory)


def test_one_edited_cell_updates_exactly_that_row(inventory):
    text = edited(export(), "svc-7", team="Payments")

    result = run(text)

    assert (result.created, result.updated, result.unchanged) == (0, 1, len(inventory) - 1)
    event = AuditEvent.objects.get(action=AuditAction.IDENTITY_UPDATED)
    before = next(i for i in inventory if i.external_id == "svc-7").team
    assert (event.data["before"], event.data["after"]) == ({"team": before}, {"team": "Payments"})
    assert Identity.objects.get(external_id="svc-7").team == "Payments"
    assert Identity.history.filter(external_id="svc-7", history_type="~").count() == 1


def test_an_edited_row_reports_every_error_with_its_line(inventory):
    text = edited(export(), "svc-3", email="not an address", rotation_period_days="0")
    line = 1 + next(i for i, row in enumerate(csv.DictReader(io.StringIO(text)), 1) if row["external_id"] == "svc-3")

    with pytest.raises(ImportRejected) as caught:
        run(text)

    assert sorted((e.line, e.key, e.message) for e in caught.value.row_errors) == [
        (line, "svc-3", "email: 'not an address' is not an email address"),
        (line, "svc-3", "rotation_period_days must be at least 1"),
    ]


def test_an_unchanged_row_given_twice_is_a_duplicate(inventory):
    text = export()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines, 1) if line.startswith("svc-5,"))

    with pytest.raises(ImportRejected) as caught:
        run(text + lines[first - 1] + "\r\n")

    assert [(e.line, e.message) for e in caught.value.row_errors] == [
        (len(lines) + 1, f"duplicate external_id 'svc-5' (first on line {first})")
    ]


def test_an_owner_s_unchanged_rows_for_what_they_do_not_own_are_refused(inventory):
    owner = with_role(inventory[2], "owner")  # a person who owns some machines and backs up others
    theirs = {portal(i) for i in inventory if owner in (i.owner, i.backup_owner)}
    assert theirs

    with pytest.raises(ImportRejected) as caught:
        run(export(), actor=owner.user)

    refused = {e.key for e in caught.value.row_errors}
    assert refused == {portal(i) for i in inventory} - theirs
    assert {e.message for e in caught.value.row_errors} == {
        "you do not own this identity: only its owner, backup owner or an admin imports it"
    }


def portal(identity: Identity) -> str:
    return identity.external_id or f"portal:{identity.pk}"


def test_stored_values_the_planner_would_change_are_not_taken_as_unchanged(inventory):
    # given a person stored with a credential (only machines have one: the planner clears it)
    person = inventory[3]
    Identity.objects.filter(pk=person.pk).update(credential_type=CredentialType.STATIC_SECRET)

    result = run(export())

    assert (result.updated, result.unchanged) == (1, len(inventory) - 1)
    assert Identity.objects.get(pk=person.pk).credential_type == CredentialType.NONE
