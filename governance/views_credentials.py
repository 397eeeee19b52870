"""API tokens on the identity's page: made, rotated and revoked by whoever answers for the identity.

A new token's secret is shown once, on the page that answers the POST (never put in a message or a
redirect, where it would be stored); the portal keeps only its keyed hash."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.kernel import clock

from . import policies, selectors
from .choices import IdentityKind
from .errors import DomainError, PermissionRefused
from .forms_credentials import ApiTokenForm
from .models import ApiToken
from .services import credentials
from .views import _form_page, _get, _through_service


def may_manage_tokens(user, identity) -> bool:
    """The page's side of `credentials._require_manager`: a person their own, a machine's owners its."""
    if policies.is_read_only(user):
        return False
    if identity.kind == IdentityKind.HUMAN:
        return identity.user_id == user.pk
    return policies.can_manage_identity(user, identity)


def tokens_of(identity) -> list[ApiToken]:
    """The identity's latest tokens, each with `state`: live, expired or revoked."""
    now = clock.now()
    tokens = list(ApiToken.objects.filter(identity=identity).select_related("rotated_to").order_by("-created_at")[:50])
    for token in tokens:
        token.state = "revoked" if token.revoked_at else ("expired" if token.expires_at <= now else "live")
    return tokens


def _identity(request, pk: int):
    identity = _get(selectors.identity_list(user=request.user), pk)
    if not may_manage_tokens(request.user, identity):
        raise PermissionDenied("Only the person themself, or a machine's owners or an admin, manage its tokens.")
    return identity


def _issued(request, identity, issued, verb: str):
    return render(
        request,
        "governance/api_token_issued.html",
        {"identity": identity, "token": issued.token, "secret": issued.secret, "verb": verb},
    )


@login_required
def api_token_create(request, pk: int):
    identity = _identity(request, pk)
    machine = identity.kind != IdentityKind.HUMAN
    form = ApiTokenForm(request.POST or None, machine=machine)
    if request.method == "POST" and form.is_valid():
        issued = _through_service(
            form,
            lambda: credentials.api_token_create(actor=request.user, identity_id=identity.pk, **form.service_kwargs()),
        )
        if issued is not None:
            return _issued(request, identity, issued, "created")
    return _form_page(
        request,
        form,
        title=f"New API token for {identity.name}",
        intro="The token is shown once, on the next page: keep it in a secrets manager.",
        back=reverse("governance:identity_detail", args=[identity.pk]),
        submit="Create token",
    )


def _token(request, pk: int, token_pk: int):
    identity = _identity(request, pk)
    return identity, _get(ApiToken.objects.filter(identity=identity), token_pk)


@login_required
@require_POST
def api_token_rotate(request, pk: int, token_pk: int):
    identity, token = _token(request, pk, token_pk)
    try:
        issued = credentials.api_token_rotate(actor=request.user, token_id=token.pk)
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("governance:identity_detail", pk=identity.pk)
    return _issued(request, identity, issued, "rotated")


@login_required
@require_POST
def api_token_revoke(request, pk: int, token_pk: int):
    identity, token = _token(request, pk, token_pk)
    reason = request.POST.get("reason", "").strip()[:200]
    try:
        credentials.api_token_revoke(actor=request.user, token_id=token.pk, reason=reason)
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Token {token.name} ({token.prefix}) revoked: it stops working now.")
    return redirect("governance:identity_detail", pk=identity.pk)
