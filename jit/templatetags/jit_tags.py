"""The request pages use the inventory's display helpers (`{% load jit_tags %}` = `{% load grant_tags %}`)."""

from datetime import datetime

from django.conf import settings

from governance.templatetags.grant_tags import register

__all__ = ["register"]


@register.filter
def times_out_at(request) -> datetime:
    """When a pending request times out if nobody decides it."""
    return request.created_at + settings.JIT_TIMEOUT_AFTER


@register.filter
def others_than(requests, request) -> list:
    """The requests in a prefetched list other than `request`, at most three."""
    return [r for r in requests if r.pk != request.pk][:3]
