"""`{% timeline_link obj %}`: a link to an identity's or entitlement's timeline, for those who may read it."""

from django import template
from django.urls import reverse

from governance.selectors_timeline import can_view_timeline

register = template.Library()


@register.inclusion_tag("governance/_timeline_link.html", takes_context=True)
def timeline_link(context, obj):
    user = context.get("user")
    kind = obj._meta.model_name
    allowed = user is not None and user.is_authenticated and can_view_timeline(user, obj)
    url = reverse(f"governance:{kind}_timeline", args=[obj.pk]) if allowed else ""
    return {"url": url, "name": getattr(obj, "name", "")}
