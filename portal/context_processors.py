from dataclasses import replace

from governance.roles import user_roles
from jit.selectors import unread_notification_count
from jit.selectors_break_glass import my_live_activations

from .navigation import nav_for


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_roles": set(), "unread_notification_count": 0}
    unread = unread_notification_count(user=user)  # one COUNT on the (recipient, read_at) index
    items = [
        replace(item, label=f"{item.label} ({unread})") if unread and item.url_name == "jit:notification_list" else item
        for item in nav_for(user)
    ]
    return {"nav_items": items, "user_roles": user_roles(user), "unread_notification_count": unread}


def break_glass_banner(request):
    """The break-glass access the signed-in person holds now, for the banner on every page (one query)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"break_glass_live": []}
    return {"break_glass_live": my_live_activations(user=user)}
