"""The portal wires the apps together and owns no tables; roles are auth groups (governance/roles.py)."""
