"""The shared kernel: small helpers every layer (audit, governance, jit, portal) may use.

It lives in the bottom app so that dependencies keep pointing one way (jit -> governance -> audit,
portal wires them; see the import-linter contract in pyproject.toml). Nothing here imports
governance, jit or portal.
"""
