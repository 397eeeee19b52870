"""New rows are parsed column by column the cheap way (issue 17, item 4), with the per-cell parsers as the
only judge: the fast path gives what they give, or steps aside so that they report the row's errors."""

import itertools

import pytest

from audit.services import Actor
from governance.imports import cells, plans
from governance.imports.columns import ColumnParser
from governance.imports.readers import Row
from governance.models import Identity
from governance.services.imports import ImportRejected, import_apply

CELLS = {
    "name": ["billing-sync", "  padded  ", "", "x" * 200, "x" * 201, "'=SUM(A1)", "gnp\u202e.exe", "tab\there", "Zoë"],
    "kind": ["service_account", "Service_Account", "robot", ""],
    "status": ["active", "", "SUSPENDED", "gone"],
    "email": ["", "a@example.org", "A.B+c@Example.ORG", "no-at-sign", "a@localhost", "a@-bad-.org", " a@b.org"],
    "team": ["Payments", "", "t" * 121, " Ops"],
    "owner_external_id": ["p-1", "", " p-1", "'-p"],
    "last_used_at": ["2025-06-01T12:00:00Z", "2025-06-01", "2025-06-01T14:00:00+02:00", "yesterday", ""],
    "rotation_period_days": ["90", "0", "ninety", "", "2147483648"],
    "may_self_request": ["true", "TRUE", "no", "", "maybe"],
}


def per_cell(values: dict) -> tuple[dict | None, list[str]]:
    errors: list = []
    parsed = plans._parse(Row(2, values), errors, "k", plans._IDENTITY_PARSERS)
    return parsed, [e.message for e in errors]


@pytest.mark.parametrize("column", list(CELLS))
def test_the_fast_path_gives_what_the_parsers_give_or_steps_aside(column):
    fast = ColumnParser(plans._IDENTITY_PARSERS, texts=plans._IDENTITY_TEXTS, emails=frozenset({"email"}))
    for raw in CELLS[column]:
        values = {"external_id": "k", "name": "ok", "kind": "api_key", column: raw}
        expected, errors = per_cell(values)
        got = fast.row(values)
        assert got is None or (got == expected and not errors), (column, raw)
        if errors:
            assert got is None, (column, raw)  # refused cells go to the parsers, which name them


@pytest.mark.django_db
def test_rows_of_several_bad_cells_report_each_with_the_parsers_message():
    header = "external_id,name,kind,email,rotation_period_days,owner_external_id"
    good = [f"m-{i},bot {i},api_key,,30,p-1" for i in range(20)]
    bad = ["m-bad,,robot,not-mail,0,p-1", "m-long," + "x" * 201 + ",api_key,,,p-1"]
    text = "\n".join([header, "p-1,Ada,human,,,", *good, *bad])

    with pytest.raises(ImportRejected) as caught:
        import_apply(actor=Actor.system(), entity="identities", fmt="csv", content=text.encode())

    assert [(e.line, e.message) for e in caught.value.row_errors] == [
        (23, "name is required"),
        (23, "kind: 'robot' is not one of human, service_account, api_key, workload, ai_agent"),
        (23, "email: 'not-mail' is not an email address"),
        (23, "rotation_period_days must be at least 1"),
        (24, "name is longer than 200 characters"),
    ]


@pytest.mark.django_db
def test_new_rows_parse_no_text_cell_and_each_value_of_other_columns_once(monkeypatch):
    calls = {"text": 0, "email": 0, "other": 0}
    for name in ("text", "email", "choice", "moment", "integer", "boolean"):
        original = getattr(cells, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name if _name in calls else "other"] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(cells, name, counted)
    header = "external_id,name,kind,email,team,owner_external_id,last_used_at,rotation_period_days"
    people = [f"p-{i},Person {i},human,p{i}@example.org,Team {i % 3},,2025-01-01T00:00:00Z," for i in range(20)]
    machines = [
        f"m-{i},bot {i},{kind},,Ops,p-{i % 20},2025-06-01T12:00:00Z,{days}"
        for i, (kind, days) in enumerate(itertools.islice(itertools.cycle([("api_key", 30), ("workload", 90)]), 40))
    ]
    text = "\n".join([header, *people, *machines])

    result = import_apply(actor=Actor.system(), entity="identities", fmt="csv", content=text.encode())

    assert result.created == 60 == Identity.objects.count()
    assert calls["text"] == calls["email"] == 0
    assert calls["other"] == 3 + 2 + 3  # kinds, times, periods (one empty): once per distinct text
