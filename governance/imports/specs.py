"""The columns of each importable entity, shared by the importer, the exporter and the templates."""

ENTITIES = ("identities", "systems", "entitlements", "grants")
FORMATS = ("csv", "json")
BATCH_SIZE = 5_000
PROGRESS_EVERY = 10_000

# Objects created in the portal have no external id; exports key them as "portal:<id>" and the
# importer resolves such a key to that object, so that any export re-imported is a no-op.
PORTAL_KEY_PREFIX = "portal:"

COLUMNS: dict[str, list[str]] = {
    "identities": [
        "external_id",
        "name",
        "kind",
        "status",
        "email",
        "team",
        "owner_external_id",
        "backup_owner_external_id",
        "manager_external_id",
        "credential_type",
        "secret_location",
        "last_rotated_at",
        "rotation_period_days",
        "last_used_at",
        "may_self_request",
    ],
    "systems": ["external_id", "name", "description", "owner_external_id", "criticality", "connector"],
    "entitlements": [
        "external_id",
        "system_external_id",
        "name",
        "owner_external_id",
        "business_purpose",
        "risk_tier",
        "requestable",
        "max_duration_hours",
        "justification_required",
        "ticket_required",
        "auto_approve_machines",
        "break_glass_eligible",
        "allowed_identity_kinds",
        "review_cadence_days",
        "approval_stages",
    ],
    "grants": ["external_id", "identity_external_id", "entitlement_external_id", "kind", "expires_at"],
}

# Columns a file may carry besides COLUMNS (the export writes them too).
OPTIONAL_COLUMNS: dict[str, list[str]] = {
    "identities": [],
    "systems": [],
    "entitlements": [],
    "grants": ["granted_at", "last_used_at"],
}

# Columns every file must have; any other column left out means "keep the stored value"
# for rows that exist and "the default" for new ones.
REQUIRED_COLUMNS: dict[str, list[str]] = {
    "identities": ["external_id", "name", "kind"],
    "systems": ["external_id", "name", "owner_external_id"],
    "entitlements": ["external_id", "system_external_id", "name", "owner_external_id"],
    "grants": ["external_id", "identity_external_id", "entitlement_external_id", "kind"],
}


# Names beside the references, for people reading an export (an auditor's evidence names who and
# what, not only keys): (the reference column they follow, name column, the field it reads). The
# importer accepts and ignores them, so an export re-imported is still a no-op.
REFERENCE_NAMES: dict[str, list[tuple[str, str, str]]] = {
    "identities": [
        ("owner_external_id", "owner_name", "owner__name"),
        ("backup_owner_external_id", "backup_owner_name", "backup_owner__name"),
        ("manager_external_id", "manager_name", "manager__name"),
    ],
    "systems": [("owner_external_id", "owner_name", "owner__name")],
    "entitlements": [
        ("system_external_id", "system_name", "system__name"),
        ("owner_external_id", "owner_name", "owner__name"),
    ],
    "grants": [
        ("identity_external_id", "identity_name", "identity__name"),
        ("entitlement_external_id", "system_name", "entitlement__system__name"),
        ("entitlement_external_id", "entitlement_name", "entitlement__name"),
    ],
}


def allowed_columns(entity: str) -> list[str]:
    return COLUMNS[entity] + OPTIONAL_COLUMNS[entity] + [name for _after, name, _field in REFERENCE_NAMES[entity]]


def export_columns(entity: str, *, with_names: bool = True) -> list[str]:
    """The import's columns; `with_names` (the CSV a person opens), each reference followed by its names."""
    columns = []
    for column in COLUMNS[entity] + OPTIONAL_COLUMNS[entity]:
        columns.append(column)
        if with_names:
            columns += [name for after, name, _field in REFERENCE_NAMES[entity] if after == column]
    return columns


def portal_key(obj) -> str:
    return obj.external_id or f"{PORTAL_KEY_PREFIX}{obj.pk}"
