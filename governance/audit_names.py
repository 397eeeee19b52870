"""How the audit trail names the inventory's objects and links to their pages, and which events make up
an identity's and an entitlement's timeline. Found by `audit.sentences.discover` (like admin.py).

Each `names` function answers for a whole page of events in one query.
"""

import re

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.urls import reverse

from audit.sentences import (
    USER_KIND,
    Named,
    Ref,
    register_actor_identity_kind,
    register_data_keys,
    register_kind,
)
from audit.timeline import register_related

from .choices import FindingKind
from .models import (
    Campaign,
    Entitlement,
    Finding,
    Grant,
    Identity,
    ImportJob,
    PolicyChange,
    ReviewItem,
    SodRule,
    System,
)

IDENTITY = "governance.identity"
ENTITLEMENT = "governance.entitlement"
GRANT = "governance.grant"


def _identity_ref(pk: int | None, name: str | None) -> Ref | None:
    return Ref(name, reverse("governance:identity_detail", args=[pk])) if pk is not None else None


def entitlement_ref(pk: int | None, name: str | None, system: str | None = None) -> Ref | None:
    """An entitlement by its name and its system's ("read (Snowflake)"): many systems have a "read"."""
    if pk is None:
        return None
    return Ref(f"{name} ({system})" if system else name, reverse("governance:entitlement_detail", args=[pk]))


def _system_ref(pk: int | None, name: str | None) -> Ref | None:
    return Ref(name, reverse("governance:system_detail", args=[pk])) if pk is not None else None


def _related(**refs: Ref | None) -> dict[str, Ref]:
    return {key: ref for key, ref in refs.items() if ref is not None}


def identity_names(ids: list[int]) -> dict[int, Named]:
    rows = Identity.objects.filter(pk__in=ids).values_list("pk", "name")
    return {pk: Named(_identity_ref(pk, name)) for pk, name in rows}


def user_names(ids: list[int]) -> dict[int, Named]:
    """A login by the name of the person it is (their identity's page); a login without one keeps its label."""
    rows = Identity.objects.filter(user_id__in=ids).values_list("user_id", "pk", "name")
    return {user_id: Named(_identity_ref(pk, name)) for user_id, pk, name in rows}


def entitlement_names(ids: list[int]) -> dict[int, Named]:
    rows = Entitlement.objects.filter(pk__in=ids).values_list("pk", "name", "system_id", "system__name")
    return {
        pk: Named(entitlement_ref(pk, name, system), _related(system=_system_ref(system_id, system)))
        for pk, name, system_id, system in rows
    }


def system_names(ids: list[int]) -> dict[int, Named]:
    return {
        pk: Named(_system_ref(pk, name)) for pk, name in System.objects.filter(pk__in=ids).values_list("pk", "name")
    }


def grant_names(ids: list[int]) -> dict[int, Named]:
    rows = Grant.objects.filter(pk__in=ids).values_list(
        "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name", "entitlement__system_id",
        "entitlement__system__name",
    )  # fmt: skip
    return {
        pk: Named(
            Ref(f"grant #{pk}", reverse("governance:grant_detail", args=[pk])),
            _related(
                identity=_identity_ref(identity_id, identity),
                entitlement=entitlement_ref(entitlement_id, entitlement, system),
                system=_system_ref(system_id, system),
            ),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system_id, system in rows
    }


def campaign_names(ids: list[int]) -> dict[int, Named]:
    rows = Campaign.objects.filter(pk__in=ids).values_list("pk", "name")
    return {pk: Named(Ref(name, reverse("governance:campaign_detail", args=[pk]))) for pk, name in rows}


def review_names(ids: list[int]) -> dict[int, Named]:
    rows = ReviewItem.objects.filter(pk__in=ids).values_list(
        "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name", "entitlement__system__name",
        "campaign_id", "campaign__name", "grant_id",
    )  # fmt: skip
    return {
        pk: Named(
            Ref(f"review #{pk}"),
            _related(
                identity=_identity_ref(identity_id, identity),
                entitlement=entitlement_ref(entitlement_id, entitlement, system),
                campaign=Ref(campaign, reverse("governance:campaign_detail", args=[campaign_id])),
                grant=Ref(f"grant #{grant_id}", reverse("governance:grant_detail", args=[grant_id]))
                if grant_id
                else None,
            ),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system, campaign_id, campaign, grant_id in rows
    }


def finding_names(ids: list[int]) -> dict[int, Named]:
    rows = Finding.objects.filter(pk__in=ids).values_list(
        "pk",
        "kind",
        "identity_id",
        "identity__name",
        "entitlement_id",
        "entitlement__name",
        "entitlement__system__name",
    )
    labels = dict(FindingKind.choices)
    named = {}
    for pk, kind, identity_id, identity, entitlement_id, entitlement, system in rows:
        about = identity or entitlement
        text = f"{labels.get(kind, kind)}{f' ({about})' if about else ''}"
        named[pk] = Named(
            Ref(text, reverse("governance:finding_list")),
            _related(
                identity=_identity_ref(identity_id, identity),
                entitlement=entitlement_ref(entitlement_id, entitlement, system),
            ),
        )
    return named


def sod_rule_names(ids: list[int]) -> dict[int, Named]:
    rows = SodRule.objects.filter(pk__in=ids).values_list("pk", "name")
    return {pk: Named(Ref(name, reverse("governance:sod_rule_edit", args=[pk]))) for pk, name in rows}


def policy_change_names(ids: list[int]) -> dict[int, Named]:
    rows = PolicyChange.objects.filter(pk__in=ids).values_list(
        "pk", "entitlement_id", "entitlement__name", "entitlement__system__name"
    )
    return {
        pk: Named(
            Ref(f"policy change #{pk}", reverse("governance:entitlement_detail", args=[entitlement_id])),
            _related(entitlement=entitlement_ref(entitlement_id, entitlement, system)),
        )
        for pk, entitlement_id, entitlement, system in rows
    }


def import_job_names(ids: list[int]) -> dict[int, Named]:
    rows = ImportJob.objects.filter(pk__in=ids).values_list("pk", "file_name")
    return {pk: Named(Ref(f"import #{pk} ({name})", reverse("governance:import_job", args=[pk]))) for pk, name in rows}


#
# The target search: objects called exactly this
#
def identities_called(text: str):
    return Identity.objects.filter(name__iexact=text).values_list("pk", flat=True)


def users_called(text: str):
    """A login by its username, or by the name of the person it is."""
    by_name = Identity.objects.filter(name__iexact=text, user__isnull=False).values("user_id")
    users = get_user_model().objects.filter(Q(username__iexact=text) | Q(pk__in=by_name))
    return users.values_list("pk", flat=True)


def entitlements_called(text: str):
    """By its name, as the trail writes it ("read (Snowflake)"), or as "Snowflake / read" (elsewhere)."""
    match = Q(name__iexact=text)
    system, _, name = text.partition(" / ")
    if name:
        match |= Q(system__name__iexact=system.strip(), name__iexact=name.strip())
    if written := re.fullmatch(r"(.+) \((.+)\)", text):
        match |= Q(name__iexact=written.group(1).strip(), system__name__iexact=written.group(2).strip())
    return Entitlement.objects.filter(match).values_list("pk", flat=True)


def systems_called(text: str):
    return System.objects.filter(name__iexact=text).values_list("pk", flat=True)


def campaigns_called(text: str):
    return Campaign.objects.filter(name__iexact=text).values_list("pk", flat=True)


def sod_rules_called(text: str):
    return SodRule.objects.filter(name__iexact=text).values_list("pk", flat=True)


register_kind(IDENTITY, noun="identity", names=identity_names, find=identities_called)
register_kind(USER_KIND, noun="login", names=user_names, find=users_called)
register_kind(ENTITLEMENT, noun="entitlement", names=entitlement_names, find=entitlements_called)
register_kind("governance.system", noun="system", names=system_names, find=systems_called)
register_kind(GRANT, noun="grant", names=grant_names)
register_kind("governance.campaign", noun="campaign", names=campaign_names, find=campaigns_called)
register_kind("governance.reviewitem", noun="review", names=review_names)
register_kind("governance.finding", noun="finding", names=finding_names)
register_kind("governance.sodrule", noun="rule", names=sod_rule_names, find=sod_rules_called)
register_kind("governance.policychange", noun="policy change", names=policy_change_names)
register_kind("governance.importjob", noun="import", names=import_job_names)
register_actor_identity_kind(IDENTITY)
register_data_keys(
    {
        **dict.fromkeys(
            ("identity", "holder", "owner", "backup_owner", "manager", "owner_to_act", "former_owner", "delegate"),
            IDENTITY,
        ),
        "entitlement": ENTITLEMENT,
        "grant": GRANT,
        "renews": GRANT,
        "system": "governance.system",
        "campaign": "governance.campaign",
        "finding": "governance.finding",
        "policy_change": "governance.policychange",
        "reviewer": USER_KIND,  # people asked or told, by their logins
    }
)
register_data_keys(
    {
        "entitlements": ENTITLEMENT,
        "grants_revoked": GRANT,
        **dict.fromkeys(("reviewers", "admins", "approvers", "added_approvers"), USER_KIND),
    },
    lists=True,
)

#
# Timelines: what hangs off an identity and an entitlement (jit adds its requests and break-glass)
#
register_related(IDENTITY, GRANT, lambda pk: Grant.objects.filter(identity_id=pk))
register_related(IDENTITY, "governance.reviewitem", lambda pk: ReviewItem.objects.filter(identity_id=pk))
register_related(IDENTITY, "governance.finding", lambda pk: Finding.objects.filter(identity_id=pk))
register_related(ENTITLEMENT, GRANT, lambda pk: Grant.objects.filter(entitlement_id=pk))
register_related(ENTITLEMENT, "governance.reviewitem", lambda pk: ReviewItem.objects.filter(entitlement_id=pk))
register_related(ENTITLEMENT, "governance.finding", lambda pk: Finding.objects.filter(entitlement_id=pk))
