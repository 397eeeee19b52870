"""Break-glass pages and API: activation with step-up, refusals beside their fields, the banner, the live
panel, eligibility management, second-factor enrolment, and no extension by any path."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import Actor
from governance.choices import GrantKind, GrantStatus
from governance.models import Grant
from governance.services.grants import grant_confirm_provisioned, grant_renew
from jit.models import AccessRequest, BreakGlassActivation, BreakGlassEligibility
from tests.factories.break_glass import PASSWORD, EligibilityFactory, activate
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db

ACTIVATE = reverse("jit:break_glass")
ELIGIBILITY = reverse("jit:break_glass_eligibility_list")


@pytest.fixture
def eligibility():
    return EligibilityFactory(identity=PersonFactory(name="Olga", user__username="olga"))


@pytest.fixture
def olga(eligibility):
    client = Client()
    client.force_login(eligibility.identity.user)
    return client


def code_for(user) -> str:
    device = TOTPDevice.objects.get(user=user)
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def form_data(eligibility, **overrides):
    data = {
        "eligibility": eligibility.pk,
        "incident_reference": "INC-77",
        "reason": "Ledger stuck",
        "password": PASSWORD,
    }
    data.update(overrides)
    return data


#
# Activation page
#
def test_an_eligible_person_breaks_glass_and_lands_on_the_activation(olga, eligibility):
    page = olga.get(ACTIVATE)
    assert page.status_code == 200 and b"Incident reference" in page.content
    assert b"One-time code" not in page.content  # no device enrolled
    response = olga.post(ACTIVATE, form_data(eligibility), follow=True)
    activation = BreakGlassActivation.objects.get()
    assert response.redirect_chain[-1][0] == reverse("jit:break_glass_detail", args=[activation.pk])
    body = response.content.decode()
    assert "Break-glass activated" in body and "INC-77" in body
    assert "The reviewers, owners and security team have been told" in body


def test_someone_not_eligible_sees_why_and_no_form(client, make_user):
    client.force_login(PersonFactory(user__username="nobody").user)
    page = client.get(ACTIVATE)
    assert page.status_code == 200
    assert b"not eligible to break glass" in page.content and b"Your password" not in page.content


def test_a_wrong_password_is_shown_beside_the_field_and_audited(olga, eligibility):
    response = olga.post(ACTIVATE, form_data(eligibility, password="wrong"))
    assert response.status_code == 400
    assert response.context["form"].errors["password"] == ["That password is not right."]
    assert not Grant.objects.exists()
    assert AuditEvent.objects.filter(action="break_glass.refused").count() == 1


def test_a_missing_incident_reference_is_refused_beside_its_field(olga, eligibility):
    response = olga.post(ACTIVATE, form_data(eligibility, incident_reference=""))
    assert response.status_code == 400 and "incident_reference" in response.context["form"].errors
    assert not Grant.objects.exists()


def test_nobody_can_pick_someone_elses_eligibility(client, eligibility):
    mallory = PersonFactory(user__username="mallory")
    client.force_login(mallory.user)
    response = client.post(ACTIVATE, form_data(eligibility))
    assert response.status_code == 400 and "eligibility" in response.context["form"].errors
    assert not Grant.objects.exists() and not BreakGlassActivation.objects.exists()


def test_with_a_device_the_code_field_appears_and_is_required(olga, eligibility):
    TOTPDevice.objects.create(user=eligibility.identity.user, name="phone", confirmed=True)
    assert b"One-time code" in olga.get(ACTIVATE).content
    missing = olga.post(ACTIVATE, form_data(eligibility))
    assert missing.status_code == 400 and "otp_token" in missing.context["form"].errors
    ok = olga.post(ACTIVATE, form_data(eligibility, otp_token=code_for(eligibility.identity.user)))
    assert ok.status_code == 302
    assert BreakGlassActivation.objects.get().step_up == "password+totp"


#
# The holder's banner, the activation page, the live panel
#
def test_the_holder_sees_a_banner_with_the_time_left_on_every_page(olga, eligibility):
    activation = activate(eligibility)
    grant_confirm_provisioned(grant_id=activation.grant_id, actor=Actor.system())
    for url in (reverse("dashboard"), reverse("jit:my_grants"), reverse("jit:request_list")):
        body = olga.get(url).content.decode()
        assert "break-glass-banner" in body and re.search(r"(59 min|1 h 0 min) left", body), url
    with time_machine.travel(activation.ends_at - timedelta(minutes=10), tick=False):
        olga.force_login(eligibility.identity.user)  # the idle session timed out meanwhile
        assert "10 min left" in olga.get(reverse("dashboard")).content.decode()
    with time_machine.travel(activation.ends_at + timedelta(seconds=1), tick=False):
        olga.force_login(eligibility.identity.user)
        assert "break-glass-banner" not in olga.get(reverse("dashboard")).content.decode()


def test_others_see_no_banner(client, eligibility):
    activate(eligibility)
    client.force_login(PersonFactory(user__username="bystander").user)
    assert "break-glass-banner" not in client.get(reverse("dashboard")).content.decode()


def test_the_activation_page_is_for_the_holder_the_reviewers_and_admins_only(client, olga, eligibility, admin_user):
    activation = activate(eligibility)
    url = reverse("jit:break_glass_detail", args=[activation.pk])
    page = olga.get(url)
    assert page.status_code == 200 and "Ends (hard cap)" in page.content.decode()
    client.force_login(PersonFactory(user__username="stranger").user)
    assert client.get(url).status_code == 404
    client.force_login(eligibility.entitlement.owner.user)  # the reviewer
    assert client.get(url).status_code == 200
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_the_admin_dashboard_shows_live_break_glass(client, eligibility, admin_user):
    activation = activate(eligibility)
    client.force_login(admin_user)
    body = client.get(reverse("dashboard")).content.decode()
    assert "Live break-glass" in body and activation.incident_reference in body
    client.force_login(PersonFactory(user__username="plain").user)
    assert "Live break-glass" not in client.get(reverse("dashboard")).content.decode()


def test_the_reviewer_sees_the_live_panel_too(client, eligibility):
    activate(eligibility)
    client.force_login(eligibility.entitlement.owner.user)
    assert "Live break-glass" in client.get(reverse("dashboard")).content.decode()


def test_an_admin_with_nothing_live_sees_an_empty_panel(client, admin_user):
    client.force_login(admin_user)
    assert "Nobody holds break-glass access right now." in client.get(reverse("dashboard")).content.decode()


#
# Eligibility pages
#
def test_admins_create_eligibility_and_the_cap_is_refused_beside_the_field(client, admin_user, eligibility):
    client.force_login(admin_user)
    person = PersonFactory(user__username="newbie", email="newbie@example.org")
    data = {
        "entitlement": eligibility.entitlement.pk,
        "identity": "Newbie@example.org",
        "max_minutes": 241,
        "expires_at": (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"),
    }
    refused = client.post(reverse("jit:break_glass_eligibility_create"), data)
    assert refused.status_code == 400 and "max_minutes" in refused.context["form"].errors
    data["max_minutes"] = 30
    unknown = client.post(reverse("jit:break_glass_eligibility_create"), {**data, "identity": "who@example.org"})
    assert unknown.status_code == 400 and "identity" in unknown.context["form"].errors
    assert client.post(reverse("jit:break_glass_eligibility_create"), data).status_code == 302
    made = BreakGlassEligibility.objects.get(identity=person)
    assert made.max_duration == timedelta(minutes=30)


def test_admins_renew_and_revoke_from_the_list(client, admin_user, eligibility):
    client.force_login(admin_user)
    later = timezone.now() + timedelta(days=200)
    renewed = client.post(
        reverse("jit:break_glass_eligibility_renew", args=[eligibility.pk]),
        {"expires_at": later.strftime("%Y-%m-%dT%H:%M")},
        follow=True,
    )
    assert "reviewed and renewed" in renewed.content.decode()
    revoked = client.post(
        reverse("jit:break_glass_eligibility_revoke", args=[eligibility.pk]), {"reason": "rota changed"}, follow=True
    )
    assert "revoked" in revoked.content.decode()
    eligibility.refresh_from_db()
    assert not eligibility.is_active and eligibility.reviewed_by == admin_user


def test_an_edit_above_the_cap_is_refused(client, admin_user, eligibility):
    client.force_login(admin_user)
    response = client.post(reverse("jit:break_glass_eligibility_edit", args=[eligibility.pk]), {"max_minutes": 600})
    assert response.status_code == 400
    eligibility.refresh_from_db()
    assert eligibility.max_duration == timedelta(hours=1)


@pytest.mark.parametrize("role", ["requester", "approver", "owner"])
def test_non_admins_cannot_manage_eligibility(client, make_user, eligibility, role):
    client.force_login(make_user(f"x-{role}", roles=(role,)))
    assert client.get(ELIGIBILITY).status_code == 403
    assert client.post(reverse("jit:break_glass_eligibility_create"), {}).status_code == 403
    assert (
        client.post(reverse("jit:break_glass_eligibility_revoke", args=[eligibility.pk]), {"reason": "x"}).status_code
        == 403
    )
    eligibility.refresh_from_db()
    assert eligibility.is_active


def test_auditors_read_the_list_without_actions(client, auditor, eligibility):
    client.force_login(auditor)
    body = client.get(ELIGIBILITY).content.decode()
    assert eligibility.entitlement.name in body and "Review / renew" not in body
    assert client.get(reverse("jit:break_glass_eligibility_create")).status_code == 403


def test_the_eligibility_list_filters_and_runs_a_fixed_number_of_queries(client, admin_user, count_queries):
    client.force_login(admin_user)
    EligibilityFactory()
    one = count_queries(lambda: client.get(ELIGIBILITY))
    for _ in range(8):
        EligibilityFactory()
    assert count_queries(lambda: client.get(ELIGIBILITY, {"sort": "-holder"})) == one
    EligibilityFactory(is_active=False)
    revoked = client.get(ELIGIBILITY, {"state": "revoked"}, headers={"HX-Request": "true"})
    assert revoked.context["page_obj"].paginator.count == 1


#
# No extension, by any path
#
@pytest.fixture
def held(eligibility):
    activation = activate(eligibility)
    return grant_confirm_provisioned(grant_id=activation.grant_id, actor=Actor.system())


def test_the_extend_page_refuses_a_break_glass_grant(olga, held):
    response = olga.post(
        reverse("jit:grant_extend", args=[held.pk]), {"duration_hours": 1, "justification": "more time please"}
    )
    assert response.status_code == 200
    assert "activate again" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_the_api_refuses_a_renewal_of_a_break_glass_grant(eligibility, held):
    api = APIClient()
    api.force_authenticate(eligibility.identity.user)
    response = api.post(
        "/api/v1/requests/",
        {
            "beneficiary": eligibility.identity.pk,
            "entitlement": eligibility.entitlement.pk,
            "duration_seconds": 3600,
            "justification": "more",
            "renewal_of": held.pk,
        },
        format="json",
    )
    assert response.status_code == 409 and "activate again" in response.json()["detail"]
    assert not AccessRequest.objects.exists()


def test_the_grant_renewal_itself_refuses_break_glass(held, admin_user):
    from governance.errors import InvalidTransition

    with pytest.raises(InvalidTransition, match="activate again"):
        grant_renew(grant_id=held.pk, actor=admin_user, duration=timedelta(hours=1))
    assert Grant.objects.get(pk=held.pk).status == GrantStatus.ACTIVE


#
# API
#
def test_api_lists_my_eligibilities_and_activates_with_step_up(eligibility):
    EligibilityFactory()  # someone else's
    api = APIClient()
    api.force_authenticate(eligibility.identity.user)
    listed = api.get("/api/v1/break-glass/eligibilities/")
    assert [row["id"] for row in listed.json()] == [eligibility.pk]
    assert listed.json()[0]["max_duration_seconds"] == 3600
    made = api.post(
        "/api/v1/break-glass/activations/",
        {"eligibility": eligibility.pk, "incident_reference": "INC-5", "reason": "db down", "password": PASSWORD},
        format="json",
    )
    assert made.status_code == 201, made.json()
    body = made.json()
    assert body["incident_reference"] == "INC-5" and body["grant_status"] == "pending_provision"
    grant = Grant.objects.get(pk=body["grant"])
    assert grant.kind == GrantKind.BREAK_GLASS
    assert api.get(f"/api/v1/break-glass/activations/{body['id']}/").status_code == 200


def test_api_refusals_are_clear_4xx_and_audited(eligibility):
    api = APIClient()
    api.force_authenticate(eligibility.identity.user)
    wrong = api.post(
        "/api/v1/break-glass/activations/",
        {"eligibility": eligibility.pk, "incident_reference": "INC-5", "reason": "db down", "password": "nope"},
        format="json",
    )
    assert wrong.status_code == 400 and "password" in wrong.json()["errors"]
    missing = api.post("/api/v1/break-glass/activations/", {"eligibility": eligibility.pk}, format="json")
    assert missing.status_code == 400 and "incident_reference" in missing.json()["errors"]
    api.force_authenticate(PersonFactory(user__username="eve").user)
    theirs = api.post(
        "/api/v1/break-glass/activations/",
        {"eligibility": eligibility.pk, "incident_reference": "INC-5", "reason": "x", "password": PASSWORD},
        format="json",
    )
    assert theirs.status_code == 403 and "not eligible" in theirs.json()["detail"]
    assert not Grant.objects.exists()
    assert AuditEvent.objects.filter(action="break_glass.refused").count() == 2


def test_api_activation_of_an_expired_eligibility_is_refused(eligibility):
    eligibility.expires_at = timezone.now() - timedelta(minutes=1)
    eligibility.save()
    api = APIClient()
    api.force_authenticate(eligibility.identity.user)
    response = api.post(
        "/api/v1/break-glass/activations/",
        {"eligibility": eligibility.pk, "incident_reference": "INC-5", "reason": "x", "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 403 and "ended" in response.json()["detail"]


def test_api_activations_of_others_are_not_found(eligibility):
    activation = activate(eligibility)
    api = APIClient()
    api.force_authenticate(PersonFactory(user__username="eve").user)
    assert api.get(f"/api/v1/break-glass/activations/{activation.pk}/").status_code == 404
    assert api.get("/api/v1/break-glass/activations/").json()["results"] == []


#
# Second factor
#
def test_a_person_enrols_a_second_factor_and_break_glass_then_asks_for_its_code(olga, eligibility):
    url = reverse("second_factor")
    assert b"No second factor enrolled" in olga.get(url).content
    olga.post(url, {"action": "start"})
    page = olga.get(url).content.decode()
    assert "otpauth://totp/" in page
    user = eligibility.identity.user
    wrong = olga.post(url, {"action": "confirm", "otp_token": "12345x"})
    assert wrong.status_code == 400 and not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        done = olga.post(url, {"action": "confirm", "otp_token": code_for(user)}, follow=True)
    assert "Second factor enrolled" in done.content.decode()
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    assert AuditEvent.objects.filter(action="user.second_factor_enrolled").count() == 1
    assert b"One-time code" in olga.get(ACTIVATE).content
