from governance.roles import user_roles

from .navigation import nav_for


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_roles": set()}
    return {"nav_items": nav_for(user), "user_roles": user_roles(user)}
