"""What an API token may reach: an area of the API and read or write.

A view names its area (`token_area`); a token reaches it only with `<area>:read` for safe methods or
`<area>:write` for the others. A view without an area takes no tokens at all, so a new endpoint is
closed to tokens until someone decides it should be open. Machines (service accounts, workloads,
agents) reach only the views built for them (`machines_allowed`): their own requests, grants,
break-glass and delegations.
"""

SCOPES: dict[str, str] = {
    "requests:read": "Read its access requests",
    "requests:write": "Submit, cancel and activate access requests",
    "grants:read": "Read its grants",
    "grants:write": "Release its grants when the work is done",
    "break_glass:read": "Read its break-glass eligibilities and activations",
    "break_glass:write": "Break glass where it is eligible (a person still gives their password)",
    "delegations:read": "Read the delegations it gave or received",
    "delegations:write": "Delegate to a machine, revoke a delegation it gave, or decline one it received",
    "inventory:read": "Read the inventory (people only)",
    "inventory:write": "Change the inventory (people only)",
}
MACHINE_SCOPES = frozenset(
    {
        "requests:read",
        "requests:write",
        "grants:read",
        "grants:write",
        "break_glass:read",
        "break_glass:write",
        "delegations:read",
        "delegations:write",
    }
)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def scope_for(area: str, method: str) -> str:
    return f"{area}:{'read' if method in SAFE_METHODS else 'write'}"
