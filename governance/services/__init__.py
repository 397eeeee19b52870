"""Every state change of the inventory: one function each, one transaction, rows locked, audited."""
