"""Parsers for one cell: each returns the stored value or raises CellError with a reason to show."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_date, parse_datetime

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, strip_bidi

# Exports prefix these with a quote so a spreadsheet never runs them (audit.exports.spreadsheet_safe);
# the importer takes the quote off again, so that an export re-imported is a no-op.
_ESCAPED = ("'=", "'+", "'-", "'@", "'\t", "'\r")

TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f", ""}


class Choices(frozenset):
    """A frozenset for the per-row membership test that remembers its order for messages."""

    def __new__(cls, values):
        choices = super().__new__(cls, values)
        choices.ordered = tuple(values)
        return choices


def _shown(choices) -> str:
    return ", ".join(c for c in getattr(choices, "ordered", sorted(choices)) if c) or "(empty)"


class CellError(ValueError):
    """A value that cannot be stored; the message names the column and why."""


def text_of(value: Any) -> str:
    """A cell as text: None is empty, a quote added by a spreadsheet-safe export is removed."""
    if type(value) is not str:
        if value is None:
            return ""
        if isinstance(value, bool | int | float):
            return str(value)
        raise CellError("expected text")
    value = value.strip()
    return value[1:] if value and value[0] == "'" and value.startswith(_ESCAPED) else value


def text(value: Any, *, column: str, max_length: int, required: bool = False) -> str:
    """Text of at most `max_length` characters (longer is a row error, never cut), without bidi controls:
    nothing a file names or describes needs them, and in a name they disguise it (issue 11)."""
    result = strip_bidi(text_of(value)).strip()
    if required and not result:
        raise CellError(f"{column} is required")
    if len(result) > max_length:
        raise CellError(f"{column} is longer than {max_length} characters")
    return result


def free_text(value: Any, *, column: str) -> str:
    """A description or purpose: bounded as on the pages and in the API."""
    return text(value, column=column, max_length=FREE_TEXT_MAX_LENGTH)


def choice(value: Any, *, column: str, choices: "frozenset[str] | list[str]", default: str | None = None) -> str:
    """One of `choices` (case-insensitive); pass a frozenset: it is checked for every row."""
    result = text_of(value).lower()
    if not result and default is not None:
        return default
    if result not in choices:
        raise CellError(f"{column}: {result!r} is not one of {_shown(choices)}")
    return result


def boolean(value: Any, *, column: str, default: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    result = text_of(value).lower()
    if not result:
        return default
    if result in TRUE:
        return True
    if result in FALSE:
        return False
    raise CellError(f"{column}: {result!r} is not true or false")


# The largest value a PostgreSQL integer column holds; a bigger one would fail the write, not the check.
INTEGER_MAX = 2_147_483_647
# The longest duration a cell may give (a thousand years): far beyond any sensible grant, well within timedelta.
HOURS_MAX = Decimal(1000 * 366 * 24)


def integer(
    value: Any, *, column: str, minimum: int = 0, maximum: int = INTEGER_MAX, default: int | None = None
) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raw = text_of(value)
        if not raw:
            return default
        try:
            number = int(raw)
        except ValueError:
            raise CellError(f"{column}: {raw!r} is not a whole number") from None
    if number < minimum:
        raise CellError(f"{column} must be at least {minimum}")
    if number > maximum:
        raise CellError(f"{column} must be at most {maximum}")
    return number


def moment(value: Any, *, column: str) -> datetime | None:
    """ISO 8601 date or date-time; without a zone it is UTC."""
    raw = text_of(value)
    if not raw:
        return None
    try:
        parsed = parse_datetime(raw)
        if parsed is None:
            day = parse_date(raw)
            parsed = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise CellError(f"{column}: {raw!r} is not an ISO 8601 date or time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def email(value: Any, *, column: str) -> str:
    result = text(value, column=column, max_length=254)
    if result:
        try:
            validate_email(result)
        except ValidationError:
            raise CellError(f"{column}: {result!r} is not an email address") from None
    return result


def hours(value: Any, *, column: str) -> timedelta | None:
    """A positive number of hours (decimals allowed), stored to the second."""
    raw = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else text_of(value)
    if not raw:
        return None
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise CellError(f"{column}: {raw!r} is not a number of hours") from None
    if not number.is_finite() or number <= 0:
        raise CellError(f"{column} must be more than 0")
    if number > HOURS_MAX:
        raise CellError(f"{column} must be at most {HOURS_MAX} hours")
    seconds = int((number * 3600).to_integral_value())
    if seconds < 1:
        raise CellError(f"{column} must be at least one second")
    return timedelta(seconds=seconds)


def hours_text(duration: timedelta | None) -> str:
    if duration is None:
        return ""
    seconds = int(duration.total_seconds())
    if seconds % 3600 == 0:
        return str(seconds // 3600)
    return format((Decimal(seconds) / Decimal(3600)).normalize(), "f")


def kinds(value: Any, *, column: str, choices: "frozenset[str] | list[str]") -> list[str] | None:
    """Semicolon-separated identity kinds (or a JSON list); empty means the default (all kinds)."""
    items = value if isinstance(value, list) else text_of(value).split(";")
    result: list[str] = []
    for item in items:
        item = text_of(item).lower()
        if not item:
            continue
        if item not in choices:
            raise CellError(f"{column}: {item!r} is not one of {_shown(choices)}")
        if item not in result:
            result.append(item)
    return result or None


def json_list(value: Any, *, column: str) -> list | None:
    """A JSON list, given as JSON text (CSV) or as a list (JSON files); empty means the default."""
    if isinstance(value, list):
        return value
    raw = text_of(value)
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise CellError(f"{column} is not valid JSON") from None
    if not isinstance(parsed, list):
        raise CellError(f"{column} must be a JSON list")
    return parsed
