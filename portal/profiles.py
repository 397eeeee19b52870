"""A person's own settings (their time zone), on a small page every signed-in person has.

The zone chosen here wins over the browser's (the `tz` cookie static/js/browser-time-zone.js keeps); with
none chosen, times follow the browser. It is kept in the session at sign-in and on saving, so the
per-request activation (portal.middleware.TimeZoneMiddleware) costs no query.
"""

import zoneinfo
from functools import cache

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods

from audit.choices import AuditAction
from audit.kernel.zones import COOKIE, known_zone
from audit.services import audit_event_record, state_change
from governance.errors import DomainError, ValidationFailed
from governance.roles import user_roles

from .models import Profile

# The session keeps the person's chosen zone ("" when they follow their browser).
SESSION_TIME_ZONE = "portal_time_zone"


@cache
def zone_choices() -> list[tuple[str, str]]:
    return [("", "My browser's time zone")] + [
        (name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())
    ]


def profile_time_zone(user) -> str:
    """The zone `user` chose, or "" (the browser's)."""
    return Profile.objects.filter(user=user).values_list("time_zone", flat=True).first() or ""


@state_change
def profile_time_zone_set(*, user, time_zone: str) -> Profile | None:
    """Keep the zone a person chose for their own pages (audited: it changes how every time they read is shown)."""
    if time_zone and known_zone(time_zone) is None:
        message = "Choose a time zone from the list."
        raise ValidationFailed(message, field_errors={"time_zone": [message]})
    profile = Profile.objects.select_for_update().filter(user=user).first()
    before = profile.time_zone if profile is not None else ""
    if before == time_zone:
        return profile  # nothing changes, nothing is recorded
    if profile is None:
        profile = Profile.objects.create(user=user, time_zone=time_zone)
    else:
        profile.time_zone = time_zone
        profile.save(update_fields=["time_zone", "updated_at"])
    audit_event_record(
        actor=user,
        action=AuditAction.USER_TIME_ZONE_CHANGED,
        target=user,
        data={"before": before or "browser", "after": time_zone or "browser"},
    )
    return profile


def remember_time_zone(session, user) -> None:
    """At sign-in (portal.signals): the chosen zone into the session, so no request looks it up again."""
    session[SESSION_TIME_ZONE] = profile_time_zone(user)


class ProfileForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        choices=zone_choices,
        help_text="Times on every page are shown in this zone, and times you type are read in it.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    """The signed-in person's own page: their roles, their time zone, links to password and second factor."""
    chosen = request.session.get(SESSION_TIME_ZONE)
    if chosen is None:  # a session from before profiles: look once
        chosen = profile_time_zone(request.user)
    status = 200
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            try:
                profile_time_zone_set(user=request.user, time_zone=form.cleaned_data["time_zone"])
            except DomainError as error:
                for name, errors in error.field_errors.items():
                    for message in errors:
                        form.add_error(name if name in form.fields else None, message)
            else:
                request.session[SESSION_TIME_ZONE] = form.cleaned_data["time_zone"]
                messages.success(request, "Your time zone is saved: times on every page follow it.")
                return redirect("profile")
        status = 400
    else:
        form = ProfileForm(initial={"time_zone": chosen})
    context = {
        "form": form,
        "roles": sorted(user_roles(request.user)),
        "browser_zone": known_zone(request.COOKIES.get(COOKIE)),
        "chosen_zone": chosen,
    }
    return render(request, "portal/profile.html", context, status=status)


urlpatterns = [path("profile/", profile, name="profile")]
