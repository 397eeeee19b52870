"""Turn an uploaded file into numbered rows: CSV (a BOM and CRLF accepted) or a JSON list of objects.

Line numbers are those a person sees in an editor: the header is line 1 of a CSV, and a JSON
object's line is where its opening brace stands.
"""

import csv
import io
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    """One reason a row (or, at line 0/1, the whole file) cannot be imported."""

    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}{key}: {self.message}"


@dataclass
class ParsedFile:
    rows: list[Row]
    errors: list[RowError]
    columns: list[str]


def decode(content: bytes) -> str:
    """UTF-8 text without its byte-order mark; anything else is refused with a clear reason."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the file is not UTF-8 text (byte {exc.start})") from None


def _check_columns(columns: list[str], *, allowed: list[str], required: list[str], line: int) -> list[RowError]:
    errors = []
    missing = [c for c in required if c not in columns]
    if missing:
        errors.append(RowError(line, "", f"missing required column(s): {', '.join(missing)}"))
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        errors.append(RowError(line, "", f"unknown column(s): {', '.join(unknown)}"))
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            errors.append(RowError(line, "", f"column {column!r} appears twice"))
        seen.add(column)
    return errors


def read_csv(text: str, *, allowed: list[str], required: list[str]) -> ParsedFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return ParsedFile([], [RowError(1, "", "the file is empty")], [])
    except csv.Error as exc:
        return ParsedFile([], [RowError(1, "", f"unreadable CSV: {exc}")], [])
    columns = [c.strip().lower() for c in header]
    errors = _check_columns(columns, allowed=allowed, required=required, line=1)
    if errors:
        return ParsedFile([], errors, columns)
    rows: list[Row] = []
    width = len(columns)
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, "", f"unreadable CSV: {exc}"))
            break
        line, start = start, reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # blank line
        if len(cells) != width:
            # A short row may stop before the external_id column: report it without a key.
            at = columns.index("external_id") if "external_id" in columns else width
            key = cells[at] if at < len(cells) else ""
            errors.append(RowError(line, key.strip(), f"expected {width} columns, found {len(cells)}"))
            continue
        rows.append(Row(line, dict(zip(columns, cells, strict=True))))
    return ParsedFile(rows, errors, columns)


def read_json(text: str, *, allowed: list[str], required: list[str]) -> ParsedFile:
    """A JSON list of objects; each object is checked for missing and unknown keys on its own line."""
    decoder = json.JSONDecoder()
    position, length = 0, len(text)
    line = 1

    def skip(pos: int) -> int:
        nonlocal line
        while pos < length and text[pos] in " \t\r\n":
            if text[pos] == "\n":
                line += 1
            pos += 1
        return pos

    position = skip(position)
    if position >= length or text[position] != "[":
        return ParsedFile([], [RowError(line, "", "a JSON import must be a list of objects")], [])
    position = skip(position + 1)
    rows: list[Row] = []
    errors: list[RowError] = []
    if position < length and text[position] == "]":
        return ParsedFile(rows, errors, [])
    while True:
        start_line = line
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            errors.append(RowError(exc.lineno, "", f"invalid JSON: {exc.msg}"))
            break
        line += text.count("\n", position, end)
        if not isinstance(item, dict):
            errors.append(RowError(start_line, "", "each item must be an object"))
        else:
            keys = [str(k).strip().lower() for k in item]
            key = str(item.get("external_id") or "")
            problems = _check_columns(keys, allowed=allowed, required=required, line=start_line)
            errors.extend(RowError(p.line, key, p.message) for p in problems)
            if not problems:
                rows.append(Row(start_line, {str(k).strip().lower(): v for k, v in item.items()}))
        position = skip(end)
        if position < length and text[position] == ",":
            position = skip(position + 1)
            continue
        if position < length and text[position] == "]":
            if skip(position + 1) < length:
                errors.append(RowError(line, "", "unexpected text after the list"))
            break
        errors.append(RowError(line, "", "invalid JSON: expected ',' or ']'"))
        break
    return ParsedFile(rows, errors, allowed)


def read(content: bytes, *, fmt: str, allowed: list[str], required: list[str]) -> ParsedFile:
    try:
        text = decode(content)
    except ValueError as exc:
        return ParsedFile([], [RowError(0, "", str(exc))], [])
    if fmt != "json":
        parsed = read_csv(text, allowed=allowed, required=required)
        # A CSV cell holds only characters of the file: without a NUL in it, no cell has one.
        return _refuse_nul(parsed) if "\x00" in text else parsed
    return _refuse_nul(read_json(text, allowed=allowed, required=required))


def _nul_column(values: dict[str, Any]) -> str | None:
    for column, value in values.items():
        cells = value if isinstance(value, list) else [value]
        if any(isinstance(cell, str) and "\x00" in cell for cell in cells):
            return column
    return None


def _refuse_nul(parsed: ParsedFile) -> ParsedFile:
    """A NUL character is no text the database can keep: the row is reported, not a server error."""
    kept: list[Row] = []
    for row in parsed.rows:
        column = _nul_column(row.values)
        if column is None:
            kept.append(row)
        else:
            key = str(row.values.get("external_id") or "").replace("\x00", "")
            parsed.errors.append(RowError(row.line, key, f"column {column!r} contains a NUL character"))
    parsed.rows[:] = kept
    return parsed
