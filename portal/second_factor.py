"""A person enrols a second factor (TOTP, django-otp) for step-up: break-glass asks for its code.

Enrolment is two steps: the portal makes an unconfirmed device and shows its key (and the otpauth URI
an authenticator app reads); the person confirms with a code the app shows. Only a confirmed device
counts. Removing it needs a current code, so a stolen session cannot switch the second factor off.
"""

from base64 import b32encode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.choices import AuditAction
from audit.services import audit_event_record, state_change
from governance.errors import DomainError, InvalidTransition, ValidationFailed

DEVICE_NAME = "authenticator"


class CodeForm(forms.Form):
    otp_token = forms.CharField(
        label="Code from your app",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def _verify(device: TOTPDevice, token: str) -> None:
    """Check a code against the device, committing django-otp's throttle and replay state on its own."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, _ = device.verify_is_allowed()
        if not allowed:
            message = "Too many wrong codes: wait a moment, then try a fresh code."
            raise ValidationFailed(message, field_errors={"otp_token": [message]})
        verified = device.verify_token(token)
    if not verified:
        message = "That code is not right. Check the time on your device and try the next code."
        raise ValidationFailed(message, field_errors={"otp_token": [message]})


@state_change
def second_factor_start(*, user) -> TOTPDevice:
    """A fresh unconfirmed device (any earlier unconfirmed one is replaced); nothing counts until confirmed."""
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        raise InvalidTransition("You already have a second factor; remove it first to enrol another.")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def second_factor_confirm(*, user, token: str) -> TOTPDevice:
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        raise InvalidTransition("Start the enrolment first.")
    _verify(device, token)
    return _confirm(user=user, device_id=device.pk)


@state_change
def _confirm(*, user, device_id: int) -> TOTPDevice:
    device = TOTPDevice.objects.select_for_update().get(pk=device_id, user=user)
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    audit_event_record(
        actor=user,
        action=AuditAction.SECOND_FACTOR_ENROLLED,
        target=user,
        data={"user": user.get_username(), "kind": "totp"},
    )
    return device


def second_factor_remove(*, user, token: str) -> None:
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    if device is None:
        raise InvalidTransition("You have no second factor to remove.")
    _verify(device, token)
    _remove(user=user)


@state_change
def _remove(*, user) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    audit_event_record(
        actor=user,
        action=AuditAction.SECOND_FACTOR_REMOVED,
        target=user,
        data={"user": user.get_username(), "kind": "totp"},
    )


def _key_text(device: TOTPDevice) -> str:
    """The secret in base32, in groups of four, as people type it into an app."""
    key = b32encode(device.bin_key).decode()
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


@login_required
@require_http_methods(["GET", "POST"])
def second_factor(request):
    user = request.user
    confirmed = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    pending = None if confirmed else TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    form = CodeForm(request.POST or None) if request.method == "POST" else CodeForm()
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "start":
                second_factor_start(user=user)
                messages.info(request, "Add the key to your authenticator app, then enter the code it shows.")
                return redirect("second_factor")
            if form.is_valid() and action == "confirm":
                second_factor_confirm(user=user, token=form.cleaned_data["otp_token"])
                messages.success(request, "Second factor enrolled: break-glass will ask for its code.")
                return redirect("second_factor")
            if form.is_valid() and action == "remove":
                second_factor_remove(user=user, token=form.cleaned_data["otp_token"])
                messages.success(request, "Second factor removed.")
                return redirect("second_factor")
            if form.is_valid():
                form.add_error(None, "Choose what to do.")
        except DomainError as error:
            for name, errors in error.field_errors.items():
                for message in errors:
                    form.add_error(name if name in form.fields else None, message)
            if not error.field_errors:
                form.add_error(None, error.message)
        status = 400
    context = {
        "confirmed": confirmed,
        "pending": pending,
        "key_text": _key_text(pending) if pending else "",
        "config_url": pending.config_url if pending else "",
        "form": form,
    }
    return render(request, "registration/second_factor.html", context, status=status)


urlpatterns = [path("account/second-factor/", second_factor, name="second_factor")]
