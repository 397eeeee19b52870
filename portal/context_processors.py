from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, IntegerField, Subquery
from django.db.models.functions import Coalesce

from audit.kernel import clock
from audit.kernel.prepared import PreparedQuery
from governance import policies
from governance.roles import user_roles
from jit.selectors import unread_notifications
from jit.selectors_break_glass import mine_live_activations, my_live_activations

from .navigation import nav_links


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_links": [], "user_roles": set(), "unread_notification_count": 0}
    unread, _ = _frame_counts(request, user)
    match = getattr(request, "resolver_match", None)
    links = nav_links(user, current_view=match.view_name if match else "", unread=unread)
    return {"nav_links": links, "user_roles": user_roles(user), "unread_notification_count": unread}


def break_glass_banner(request):
    """The break-glass access the signed-in person holds now, for the banner on every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"break_glass_live": []}
    _, any_live = _frame_counts(request, user)
    return {"break_glass_live": my_live_activations(user=user, any_live=True) if any_live else []}


def _frame_counts(request, user) -> tuple[int, bool]:
    """What every page's frame asks of the database, in one query: unread notifications (for the menu)
    and whether the person holds break-glass access now (for the banner). Kept on the request: both
    context processors use it."""
    counted = getattr(request, "_portal_frame_counts", None)
    if counted is None:
        me = policies.identity_of(user)
        # No identity, no break-glass access: their id never matches an activation's identity.
        counted = request._portal_frame_counts = _FRAME_COUNTS.rows(user.pk, me.pk if me else None, clock.now())[0]
    return counted


def _frame_counts_query(user_id, identity_id, now):
    unread = unread_notifications(user=user_id).order_by().values("recipient").annotate(n=Count("pk")).values("n")
    live = mine_live_activations(user=user_id, me=identity_id, now=now)
    return (
        get_user_model()
        ._default_manager.filter(pk=user_id)
        .values_list(Coalesce(Subquery(unread, output_field=IntegerField()), 0), Exists(live))
    )


_FRAME_COUNTS = PreparedQuery(_frame_counts_query)
