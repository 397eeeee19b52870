"""The request pages use the inventory's display helpers (`{% load jit_tags %}` = `{% load grant_tags %}`)."""

from governance.templatetags.grant_tags import register

__all__ = ["register"]
