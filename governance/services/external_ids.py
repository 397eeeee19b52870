"""External ids are the keys imports match rows by; the `portal:` prefix is reserved for the portal's own.

Exports key a record without an external id as "portal:<id>" and the importer resolves such a key
to that record, so a record whose external id someone set to "portal:<another id>" would make an
export re-imported change the wrong record (or fail).
"""

from typing import Any

from ..errors import ValidationFailed
from ..imports.specs import PORTAL_KEY_PREFIX

RESERVED_MESSAGE = f"External ids starting with “{PORTAL_KEY_PREFIX}” are reserved for the portal's own keys."


def refuse_reserved_external_id(value: Any, *, current: Any = None) -> None:
    """Refuse an external id in the reserved namespace, unless it is the value already stored (no change)."""
    if not isinstance(value, str) or value == current:
        return
    if value.strip().lower().startswith(PORTAL_KEY_PREFIX):
        raise ValidationFailed(RESERVED_MESSAGE, field_errors={"external_id": [RESERVED_MESSAGE]})
