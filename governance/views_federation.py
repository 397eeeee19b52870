"""Workload trusts on a machine's page: which subject of which configured OIDC issuer may exchange its JWTs
for the machine's short-lived tokens. Made and revoked by whoever answers for the machine."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from .choices import IdentityKind
from .models import WorkloadTrust
from .services import federation
from .token_scopes import MACHINE_SCOPES, SCOPES
from .views import _attempt, _form_page, _get, _through_service
from .views_credentials import _identity


class WorkloadTrustForm(forms.Form):
    issuer = forms.ChoiceField(label="Issuer", help_text="The OIDC issuer (iss) the workload's JWTs come from.")
    subject = forms.CharField(
        label="Subject",
        max_length=500,
        help_text="The JWT's sub, exactly (e.g. system:serviceaccount:ci:deployer, repo:org/app:ref:refs/heads/main).",
    )
    scopes = forms.MultipleChoiceField(
        label="What its tokens may reach",
        widget=forms.CheckboxSelectMultiple,
        choices=[(k, v) for k, v in SCOPES.items() if k in MACHINE_SCOPES],
    )
    token_minutes = forms.IntegerField(
        label="Token lifetime (minutes)",
        min_value=1,
        initial=15,
        help_text="Never longer than the JWT itself, nor the issuer's cap.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["issuer"].choices = [
            (name, f"{name} (audience {issuer.audience}, at most {issuer.max_token_minutes} min)")
            for name, issuer in federation.issuers().items()
        ]


def _machine(request, pk: int):
    identity = _identity(request, pk)  # visible to the user, and theirs to manage (else 404/403)
    if identity.kind == IdentityKind.HUMAN:
        raise Http404("People sign in themselves: workload trusts are for machines.")
    return identity


@login_required
def workload_trust_create(request, pk: int):
    identity = _machine(request, pk)
    form = WorkloadTrustForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        trust = _through_service(
            form,
            lambda: federation.workload_trust_create(actor=request.user, identity_id=identity.pk, **form.cleaned_data),
        )
        if trust is not None:
            messages.success(
                request, f"{identity.name} now trusts {trust.subject} from {trust.issuer}: it may exchange its JWTs."
            )
            return redirect("governance:identity_detail", pk=identity.pk)
    configured = bool(form.fields["issuer"].choices)
    return _form_page(
        request,
        form,
        title=f"New workload trust for {identity.name}",
        intro="A workload presenting a JWT from this issuer with this subject gets a short-lived token for "
        f"{identity.name}: no long-lived secret."
        + ("" if configured else " No issuer is configured yet (WORKLOAD_ISSUERS): ask an administrator."),
        back=reverse("governance:identity_detail", args=[identity.pk]),
        submit="Trust this workload",
    )


@login_required
@require_POST
def workload_trust_revoke(request, pk: int, trust_pk: int):
    identity = _machine(request, pk)
    trust = _get(WorkloadTrust.objects.filter(identity=identity), trust_pk)
    _attempt(
        request,
        lambda: federation.workload_trust_revoke(actor=request.user, trust_id=trust.pk),
        f"Trust of {trust.subject} revoked: its JWTs buy no token, and the tokens it bought stop working.",
    )
    return redirect("governance:identity_detail", pk=identity.pk)
