"""The admins' page for SCIM sources: register an identity provider, replace or revoke its token.

The same services as `manage.py scim_source`; the token is shown once, on the page that answers the
POST that made it, and never again (only its keyed hash is kept).
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance import policies
from governance.errors import DomainError

from ..models_scim import ScimSource
from .services import scim_source_create, scim_source_revoke, scim_source_rotate


class ScimSourceForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=50,
        help_text="The identity provider, in letters, digits, - or _ (e.g. okta, entra-id). It names the source in the audit trail.",
    )


def _require_admin(request) -> None:
    if not policies.is_admin(request.user):
        raise PermissionDenied("Only admins manage identity sources.")


def _page(request, form, status: int = 200):
    sources = ScimSource.objects.select_related("created_by").annotate(people=Count("users")).order_by("name")
    return render(
        request,
        "identity_sources/scim_sources.html",
        {"sources": sources, "form": form, "scim_url": request.build_absolute_uri(reverse("scim:root"))},
        status=status,
    )


def _issued(request, source: ScimSource, secret: str, verb: str):
    """The one answer that carries the token; not cached, so Back does not show it again."""
    response = render(
        request, "identity_sources/scim_token_issued.html", {"source": source, "secret": secret, "verb": verb}
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
def scim_sources(request):
    _require_admin(request)
    return _page(request, ScimSourceForm())


@login_required
@require_POST
def scim_source_add(request):
    """Its own URL: the answer carries the token, and "Done" then goes to another URL (a link back to the
    URL a POST answered would ask the browser to send the form again)."""
    _require_admin(request)
    form = ScimSourceForm(request.POST)
    if form.is_valid():
        try:
            source, secret = scim_source_create(actor=request.user, name=form.cleaned_data["name"])
        except DomainError as error:
            form.add_error("name", error.message)
        else:
            return _issued(request, source, secret, "issued")
    return _page(request, form, status=400)


@login_required
@require_POST
def scim_source_rotate_token(request, pk: int):
    _require_admin(request)
    source = get_object_or_404(ScimSource, pk=pk)
    try:
        source, secret = scim_source_rotate(actor=request.user, source_id=source.pk)
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("identity_sources:scim_sources")
    return _issued(request, source, secret, "replaced")


@login_required
@require_POST
def scim_source_stop(request, pk: int):
    _require_admin(request)
    source = get_object_or_404(ScimSource, pk=pk)
    scim_source_revoke(actor=request.user, source_id=source.pk)
    messages.success(
        request,
        f"SCIM source {source.name} revoked: its token no longer works. The people it provisioned stay as they are.",
    )
    return redirect("identity_sources:scim_sources")
