"""How the audit trail names the inventory's objects and links to their pages, and which events make up
an identity's and an entitlement's timeline. Found by `audit.sentences.discover` (like admin.py).

Each `names` function answers for a whole page of events in one query, its SQL built once per process
(`batch_rows`), and links its rows through link makers made once a page (`audit.sentences.page_links`):
a page of 50 events names some 250 links, and `reverse()` costs ~30 µs.
"""

import re
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db.models import Model, Q
from django.urls import reverse

from audit.kernel.prepared import PreparedQuery
from audit.sentences import (
    USER_KIND,
    Named,
    Ref,
    page_links,
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
from .querysets import one_of

IDENTITY = "governance.identity"
ENTITLEMENT = "governance.entitlement"
GRANT = "governance.grant"


def batch_rows(model: type[Model], *fields: str, key: str = "pk") -> PreparedQuery:
    """`.rows(ids)`: the `fields` of the rows whose `key` is one of `ids`, in no order. One SQL for any
    number of ids (`key = ANY(ids)` on PostgreSQL), so Django builds it once per process, not at every page."""
    return PreparedQuery(lambda ids: model.objects.filter(one_of(key, ids)).order_by().values_list(*fields))


RefMaker = Callable[..., Ref | None]


def identity_refs() -> RefMaker:
    """(pk, name) -> the identity's Ref, linked to its page; None without a pk."""
    url = page_links("governance:identity_detail")
    return lambda pk, name: Ref(name, url(pk)) if pk is not None else None


def entitlement_refs() -> RefMaker:
    """(pk, name, system) -> the entitlement's Ref by its name and its system's ("read (Snowflake)"): many
    systems have a "read"."""
    url = page_links("governance:entitlement_detail")

    def ref(pk: int | None, name: str | None, system: str | None = None) -> Ref | None:
        if pk is None:
            return None
        return Ref(f"{name} ({system})" if system else name, url(pk))

    return ref


def system_refs() -> RefMaker:
    """(pk, name) -> the system's Ref, linked to its page; None without a pk."""
    url = page_links("governance:system_detail")
    return lambda pk, name: Ref(name, url(pk)) if pk is not None else None


def _related(**refs: Ref | None) -> dict[str, Ref]:
    return {key: ref for key, ref in refs.items() if ref is not None}


_IDENTITIES = batch_rows(Identity, "pk", "name")
_USERS = batch_rows(Identity, "user_id", "pk", "name", key="user_id")
_ENTITLEMENTS = batch_rows(Entitlement, "pk", "name", "system_id", "system__name")
_SYSTEMS = batch_rows(System, "pk", "name")
_GRANTS = batch_rows(
    Grant, "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name", "entitlement__system_id",
    "entitlement__system__name",
)  # fmt: skip
_CAMPAIGNS = batch_rows(Campaign, "pk", "name")
_REVIEWS = batch_rows(
    ReviewItem, "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name",
    "entitlement__system__name", "campaign_id", "campaign__name", "grant_id",
)  # fmt: skip
_FINDINGS = batch_rows(
    Finding, "pk", "kind", "identity_id", "identity__name", "entitlement_id", "entitlement__name",
    "entitlement__system__name",
)  # fmt: skip
_SOD_RULES = batch_rows(SodRule, "pk", "name")
_POLICY_CHANGES = batch_rows(PolicyChange, "pk", "entitlement_id", "entitlement__name", "entitlement__system__name")
_IMPORT_JOBS = batch_rows(ImportJob, "pk", "file_name")


def identity_names(ids: list[int]) -> dict[int, Named]:
    identity = identity_refs()
    return {pk: Named(identity(pk, name)) for pk, name in _IDENTITIES.rows(ids)}


def user_names(ids: list[int]) -> dict[int, Named]:
    """A login by the name of the person it is (their identity's page); a login without one keeps its label."""
    identity = identity_refs()
    return {user_id: Named(identity(pk, name)) for user_id, pk, name in _USERS.rows(ids)}


def entitlement_names(ids: list[int]) -> dict[int, Named]:
    entitlement, system_ref = entitlement_refs(), system_refs()
    return {
        pk: Named(entitlement(pk, name, system), _related(system=system_ref(system_id, system)))
        for pk, name, system_id, system in _ENTITLEMENTS.rows(ids)
    }


def system_names(ids: list[int]) -> dict[int, Named]:
    system = system_refs()
    return {pk: Named(system(pk, name)) for pk, name in _SYSTEMS.rows(ids)}


def grant_names(ids: list[int]) -> dict[int, Named]:
    grant_url, identity_ref, entitlement_ref, system_ref = (
        page_links("governance:grant_detail"), identity_refs(), entitlement_refs(), system_refs(),
    )  # fmt: skip
    return {
        pk: Named(
            Ref(f"grant #{pk}", grant_url(pk)),
            _related(
                identity=identity_ref(identity_id, identity),
                entitlement=entitlement_ref(entitlement_id, entitlement, system),
                system=system_ref(system_id, system),
            ),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system_id, system in _GRANTS.rows(ids)
    }


def campaign_names(ids: list[int]) -> dict[int, Named]:
    campaign_url = page_links("governance:campaign_detail")
    return {pk: Named(Ref(name, campaign_url(pk))) for pk, name in _CAMPAIGNS.rows(ids)}


def review_names(ids: list[int]) -> dict[int, Named]:
    campaign_url, grant_url, identity_ref, entitlement_ref = (
        page_links("governance:campaign_detail"), page_links("governance:grant_detail"), identity_refs(),
        entitlement_refs(),
    )  # fmt: skip
    return {
        pk: Named(
            Ref(f"review #{pk}"),
            _related(
                identity=identity_ref(identity_id, identity),
                entitlement=entitlement_ref(entitlement_id, entitlement, system),
                campaign=Ref(campaign, campaign_url(campaign_id)),
                grant=Ref(f"grant #{grant_id}", grant_url(grant_id)) if grant_id else None,
            ),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system, campaign_id, campaign, grant_id in (
            _REVIEWS.rows(ids)
        )
    }


def finding_names(ids: list[int]) -> dict[int, Named]:
    findings_url = reverse("governance:finding_list")  # one page for all: the list
    identity_ref, entitlement_ref = identity_refs(), entitlement_refs()
    labels = dict(FindingKind.choices)
    named = {}
    for pk, kind, identity_id, identity, entitlement_id, entitlement, system in _FINDINGS.rows(ids):
        about = identity or entitlement
        text = f"{labels.get(kind, kind)}{f' ({about})' if about else ''}"
        named[pk] = Named(
            Ref(text, findings_url),
            _related(
                identity=identity_ref(identity_id, identity),
                entitlement=entitlement_ref(entitlement_id, entitlement, system),
            ),
        )
    return named


def sod_rule_names(ids: list[int]) -> dict[int, Named]:
    rule_url = page_links("governance:sod_rule_edit")
    return {pk: Named(Ref(name, rule_url(pk))) for pk, name in _SOD_RULES.rows(ids)}


def policy_change_names(ids: list[int]) -> dict[int, Named]:
    entitlement_ref = entitlement_refs()
    named = {}
    for pk, entitlement_id, entitlement, system in _POLICY_CHANGES.rows(ids):
        ref = entitlement_ref(entitlement_id, entitlement, system)
        named[pk] = Named(Ref(f"policy change #{pk}", ref.url), _related(entitlement=ref))
    return named


def import_job_names(ids: list[int]) -> dict[int, Named]:
    job_url = page_links("governance:import_job")
    return {pk: Named(Ref(f"import #{pk} ({name})", job_url(pk))) for pk, name in _IMPORT_JOBS.rows(ids)}


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
