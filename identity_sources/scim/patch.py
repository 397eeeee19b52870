"""RFC 7644 §3.5.2 PATCH, applied to a resource's SCIM document.

django-scim2 parses the request and leaves the `add`/`remove`/`replace` handlers to the adapter. The
portal applies the operations to the resource's current document (as GET shows it) and then saves
the result exactly as a PUT of that document, so PATCH and PUT share one path into the services:
one validation, one transaction, one audit trail. Supported paths: `attr`, `attr.sub`, an extension
URN prefix (`urn:...:enterprise:2.0:User:manager`), and a value filter on a multi-valued attribute
(`emails[type eq "work"].value`, `members[value eq "42"]`). Attribute names are case-insensitive.
"""

import re
from typing import Any

from django_scim import exceptions

_PATH = re.compile(r"^(?P<attr>[\w$]+)(?:\[(?P<filter>[^\]]+)\])?(?:\.(?P<sub>[\w$]+))?$")
_FILTER = re.compile(r'^\s*(?P<sub>[\w$]+)\s+eq\s+(?P<value>"(?:[^"\\]|\\.)*"|true|false|null|[\w.+-]+)\s*$', re.I)


def _bad(message: str, scim_type: str = "invalidPath") -> exceptions.BadRequestError:
    return exceptions.BadRequestError(message, scim_type=scim_type)


def _key(container: dict[str, Any], name: str) -> str:
    """The key `name` is stored under, compared case-insensitively (RFC 7643 §2.1)."""
    return next((k for k in container if k.lower() == name.lower()), name)


def _literal(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if text.startswith('"'):
        return text[1:-1].replace('\\"', '"')
    return text


def _matcher(expression: str | None):
    if expression is None:
        return None
    match = _FILTER.match(expression)
    if match is None:
        raise _bad(f"Unsupported filter in path: {expression!r} (use `sub eq value`).", "invalidFilter")
    sub, wanted = match["sub"], _literal(match["value"])

    def matches(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        value = item.get(_key(item, sub))
        if isinstance(value, str) and isinstance(wanted, str):
            return value.lower() == wanted.lower() if sub.lower() != "value" else value == wanted
        return value == wanted

    return matches


def _split(document: dict[str, Any], path: str, extensions: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """The container a path starts in (the document or an extension's object) and the rest of it."""
    for urn in extensions:
        if path.lower().startswith(urn.lower() + ":"):
            container = document.setdefault(_key(document, urn), {})
            return container, path[len(urn) + 1 :]
        if path.lower() == urn.lower():
            return document, urn
    return document, path


def _merge(target: Any, value: Any) -> Any:
    if isinstance(target, dict) and isinstance(value, dict):
        merged = dict(target)
        for name, sub in value.items():
            merged[_key(merged, name)] = sub
        return merged
    return value


def _same_member(a: Any, b: Any) -> bool:
    return isinstance(a, dict) and isinstance(b, dict) and "value" in a and a.get("value") == b.get("value")


def _apply_one(op: str, container: dict[str, Any], path: str, value: Any) -> None:
    match = _PATH.match(path)
    if match is None:
        raise _bad(f"Unsupported path {path!r}.")
    attr = _key(container, match["attr"])
    matches, sub = _matcher(match["filter"]), match["sub"]
    current = container.get(attr)

    if matches is not None:  # a filtered multi-valued attribute
        items = current if isinstance(current, list) else []
        chosen = [item for item in items if matches(item)]
        if not chosen and op != "add":
            raise _bad(f"No value of {match['attr']} matches {match['filter']!r}.", "noTarget")
        if op == "remove" and sub is None:
            container[attr] = [item for item in items if not matches(item)]
        elif op == "remove":
            for item in chosen:
                item.pop(_key(item, sub), None)
        elif sub is not None:
            for item in chosen:
                item[_key(item, sub)] = value
        else:
            container[attr] = [_merge(item, value) if matches(item) else item for item in items]
        return

    if sub is not None:  # attr.sub of a complex attribute
        holder = current if isinstance(current, dict) else {}
        if op == "remove":
            holder.pop(_key(holder, sub), None)
        else:
            holder[_key(holder, sub)] = value
        container[attr] = holder
        return

    if op == "remove":
        if isinstance(current, list) and isinstance(value, list) and value:  # remove the listed members
            container[attr] = [item for item in current if not any(_same_member(item, v) for v in value)]
        else:
            container.pop(attr, None)
    elif op == "add" and (isinstance(current, list) or isinstance(value, list)):
        added = value if isinstance(value, list) else [value]
        kept = [item for item in (current or []) if not any(_same_member(item, v) for v in added)]
        container[attr] = kept + added
    elif isinstance(value, dict):  # a complex attribute: the sub-attributes given replace or add
        container[attr] = _merge(current, value)
    else:
        container[attr] = value


def apply_operations(document: dict[str, Any], operations: list[Any], extensions: tuple[str, ...] = ()) -> None:
    """Apply PATCH `operations` to `document` in place; BadRequestError (400) on anything malformed."""
    if not isinstance(operations, list):
        raise _bad("Operations must be a list.", "invalidSyntax")
    for operation in operations:
        if not isinstance(operation, dict):
            raise _bad("Each operation must be an object.", "invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "remove", "replace"):
            raise _bad(f"Unknown PATCH op {operation.get('op')!r}.", "invalidSyntax")
        path, value = operation.get("path"), operation.get("value")
        if not path:
            if op == "remove":
                raise _bad('"path" is required for "remove".', "noTarget")
            if not isinstance(value, dict):
                raise _bad("Without a path, the value must be an object of attributes.", "invalidValue")
            for name, sub_value in value.items():
                container, rest = _split(document, name, extensions)
                if rest in extensions and isinstance(sub_value, dict):
                    for ext_name, ext_value in sub_value.items():
                        _apply_one(op, document.setdefault(_key(document, rest), {}), ext_name, ext_value)
                else:
                    _apply_one(op, container, rest, sub_value)
            continue
        container, rest = _split(document, str(path), extensions)
        if rest in extensions:
            if op == "remove":
                document.pop(_key(document, rest), None)
            else:
                document[_key(document, rest)] = _merge(document.get(_key(document, rest)), value)
            continue
        _apply_one(op, container, rest, value)
