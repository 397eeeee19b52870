"""Inventory import and export: CSV and JSON for identities, systems, entitlements and grants.

`readers` turns a file into numbered rows, `cells` parses one value, `plans` validates every row
against in-memory maps of the inventory (no per-row queries) and `exports` streams the inventory
back out in the same columns. The writes themselves live in `governance.services.imports`.
"""

from .specs import ENTITIES, FORMATS

__all__ = ["ENTITIES", "FORMATS"]
