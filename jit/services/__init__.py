"""Every state change of requests and JIT grants: one function each, one transaction, audited."""
