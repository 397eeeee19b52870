"""Token scopes: a token reaches a view only when the view names its area and the token holds the scope."""

from django.contrib.auth.models import AnonymousUser
from rest_framework.permissions import BasePermission

from governance.models import ApiToken
from governance.token_scopes import scope_for

from .authentication import MachinePrincipal


def _machines_allowed(view) -> bool:
    """`machines_allowed` is True for a whole view, or the set of its actions a machine may take."""
    allowed = getattr(view, "machines_allowed", False)
    if isinstance(allowed, bool):
        return allowed
    return getattr(view, "action", None) in allowed


class TokenScopes(BasePermission):
    """Sessions pass through; tokens need the view's `token_area` and the matching scope, and machines
    a view that allows them (`machines_allowed`)."""

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        area = getattr(view, "token_area", None)
        if area is None:
            self.message = "This endpoint does not take API tokens: sign in."
            self.code = "token_not_accepted"
            return False
        if isinstance(request.user, MachinePrincipal):
            if not _machines_allowed(view):
                self.message = "A machine's token reaches its own requests, grants and break-glass only."
                self.code = "machine_not_allowed"
                return False
            # DRF copies the principal onto the Django request, where model history would record it as
            # a login; a machine has none (its identity is in the audit trail's actor).
            request._request.user = AnonymousUser()
        needed = scope_for(area, request.method)
        if needed not in token.scopes:
            self.message = f"The token lacks the scope {needed}."
            self.code = "insufficient_scope"  # as OAuth names it (RFC 6750)
            return False
        return True
