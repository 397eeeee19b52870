"""Logins and roles, kept by admins (the Django admin no longer edits users or groups)."""

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.kernel.htmx import render_list
from audit.models import AuditEvent

from . import policies
from .forms import ReasonForm
from .forms_logins import LoginCreateForm, RolesForm
from .models import Identity
from .roles import Role
from .services import logins
from .views import _attempt, _form_page, _get, _listing, _through_service

User = get_user_model()
LOGIN_SORTS = {"username": "username", "last_login": "last_login", "joined": "date_joined"}


class LoginFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    role = django_filters.ChoiceFilter(choices=Role.choices, field_name="groups__name", label="Role")
    is_active = django_filters.BooleanFilter(
        label="Login", widget=forms.Select(choices=[("", "Any"), ("true", "On"), ("false", "Off")])
    )

    class Meta:
        model = User
        fields = ["q", "role", "is_active"]

    def search(self, queryset, name, value):
        # Two sets united rather than one OR across the join: each is then read through its trigram
        # index (governance migration 0016) instead of the whole login table.
        own = User.objects.filter(Q(username__icontains=value) | Q(email__icontains=value)).order_by().values("pk")
        named = Identity.objects.filter(name__icontains=value, user__isnull=False).order_by().values("user_id")
        return queryset.filter(pk__in=own.union(named))


def _require_admin(request) -> None:
    if not policies.is_admin(request.user):
        raise PermissionDenied("Only admins manage logins and roles.")


def _logins():
    return User.objects.select_related("identity").prefetch_related(
        Prefetch("groups", queryset=User.groups.field.related_model.objects.filter(name__in=Role.values))
    )


@login_required
def login_list(request):
    _require_admin(request)
    context = _listing(request, _logins(), LoginFilter, LOGIN_SORTS, "username")
    return render_list(request, "governance/login_list.html", "governance/_login_results.html", context)


@login_required
def login_create(request):
    _require_admin(request)
    form = LoginCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = _through_service(
            form,
            lambda: logins.login_create(
                actor=request.user,
                identity_id=form.cleaned_data["identity"].pk,
                username=form.cleaned_data["username"],
                roles=form.cleaned_data["roles"],
            ),
        )
        if user is not None:
            messages.success(
                request, f"Login {user.username} made; a link to choose a password was sent to {user.email}."
            )
            return redirect("governance:login_detail", user.pk)
    return _form_page(
        request,
        form,
        title="New login",
        intro="A login for a person of the inventory. You never set their password: they choose it from the link mailed to them.",
        back=reverse("governance:login_list"),
        submit="Make the login",
    )


@login_required
def login_detail(request, pk: int):
    _require_admin(request)
    user = _get(_logins(), pk)
    held = [group.name for group in user.groups.all()]
    form = RolesForm(request.POST or None, initial={"roles": held})
    if request.method == "POST" and form.is_valid():
        saved = _through_service(
            form, lambda: logins.login_set_roles(actor=request.user, user_id=user.pk, roles=form.cleaned_data["roles"])
        )
        if saved is not None:
            messages.success(request, f"Roles of {user.username} saved.")
            return redirect("governance:login_detail", user.pk)
    events = AuditEvent.objects.for_target(user).order_by("-seq")[:20]
    return render(
        request,
        "governance/login_detail.html",
        {
            "login": user,
            "identity": Identity.objects.filter(user=user).first(),
            "form": form,
            "reason_form": ReasonForm(),
            "is_self": user.pk == request.user.pk,
            "events": events,
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def login_set_active(request, pk: int, active: bool):
    _require_admin(request)
    user = _get(User.objects.all(), pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        verb = "turned on" if active else "turned off"
        _attempt(
            request,
            lambda: logins.login_set_active(
                actor=request.user, user_id=user.pk, active=active, reason=form.cleaned_data["reason"]
            ),
            f"Login {user.username} {verb}.",
        )
    else:
        messages.error(request, "Give a reason (at most a few thousand characters).")
    return redirect("governance:login_detail", user.pk)


@login_required
@require_POST
def login_password_reset(request, pk: int):
    _require_admin(request)
    user = _get(User.objects.all(), pk)
    _attempt(
        request,
        lambda: logins.login_send_password_reset(actor=request.user, user_id=user.pk),
        f"A link to choose a new password was sent to {user.email}.",
    )
    return redirect("governance:login_detail", user.pk)
