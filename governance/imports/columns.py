"""Parse a row's cells column by column, the cheap way, with the per-cell parsers as the only judge.

At 100,000 rows the per-cell parsers (`cells`) cost more than writing the rows. Most cells need none
of their work: a text cell with no surrounding space, control or bidi character and no escaping quote
is kept as it is (`as_is`), an address needs the validator's user pattern and, once per domain, its
domain check; a column of few values (kind, status, times, numbers, booleans) is parsed once per
distinct text and remembered. Any other cell, or any cell the parser refuses, sends the whole row to
`plans._parse`: its errors are the parsers' own, every error of the row at once.
"""

from collections.abc import Callable
from typing import Any

from django.core.validators import validate_email

from .cells import CellError

BAD = object()  # a cell the parser refuses
_UNSEEN = object()
_TEXT, _EMAIL, _MEMO = range(3)


def as_is(value: str) -> bool:
    """True if `cells.text` returns `value` unchanged: no surrounding space, no control or bidi
    character (`isprintable` is False for both), no leading quote (a spreadsheet-safe export's)."""
    return value.isprintable() and value[:1] != "'" and value == value.strip()


class ColumnParser:
    """One file's cells, parsed as the planner's `parsers` would, memoised per column and text.

    `texts` names the text columns (max length, required) and `emails` the address columns: those are
    checked without calling a parser; every other parsed column is remembered per distinct text.
    """

    def __init__(
        self,
        parsers: dict[str, Callable[[Any], Any]],
        *,
        texts: dict[str, tuple[int, bool]],
        emails: frozenset[str] = frozenset(),
    ):
        self.parsers, self.texts, self.emails = parsers, texts, emails
        self.memo: dict[str, dict[str, Any]] = {column: {} for column in parsers}
        self._domains: dict[str, bool] = {}
        # column -> (how, its memo, max length, required): one lookup per cell
        self._how = {
            column: (
                _TEXT if column in texts else _EMAIL if column in emails else _MEMO,
                self.memo[column],
                *texts.get(column, (0, False)),
            )
            for column in parsers
        }

    def cell(self, column: str, raw: str) -> Any:
        """The cell parsed by its parser (once per distinct text of the column), or BAD."""
        memo = self.memo[column]
        value = memo.get(raw, _UNSEEN)
        if value is _UNSEEN:
            try:
                value = self.parsers[column](raw)
            except CellError:
                value = BAD
            memo[raw] = value
        return value

    def row(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """The row's parsed cells (the columns it has), or None: then the per-cell parsers decide."""
        parsed = {}
        hows = self._how
        for column, raw in values.items():
            spec = hows.get(column)
            if spec is None:
                continue  # not parsed: the key, the names beside references
            if type(raw) is not str:
                return None
            how, memo, max_length, required = spec
            if how == _TEXT:
                if len(raw) > max_length or (required and not raw):
                    return None
                if not (raw.isprintable() and raw[:1] != "'" and raw == raw.strip()):  # as_is, inline
                    return None
                parsed[column] = raw
            elif how == _EMAIL:
                if raw and not self._address(raw):
                    return None
                parsed[column] = raw
            else:
                value = memo.get(raw, _UNSEEN)
                if value is _UNSEEN:
                    value = self.cell(column, raw)
                if value is BAD:
                    return None
                parsed[column] = value
        return parsed

    def _address(self, raw: str) -> bool:
        """What `cells.email` accepts unchanged: Django's validator, its domain check made once per domain."""
        if len(raw) > 254 or not as_is(raw) or "@" not in raw:
            return False
        user, domain = raw.rsplit("@", 1)
        if not validate_email.user_regex.match(user):
            return False
        known = self._domains.get(domain)
        if known is None:
            known = self._domains[domain] = domain in validate_email.domain_allowlist or bool(
                validate_email.validate_domain_part(domain)
            )
        return known
