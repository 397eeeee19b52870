"""Inventory pages. Views parse input, call one service and render; every page restricts what it shows
to what the user may see (others get 404) and refuses edits the policies do not allow (403)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F, Prefetch
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.kernel.htmx import render_list
from audit.kernel.pagination import DeferredJoinPaginator

from . import policies, selectors, selectors_catalogue
from .choices import FindingStatus, GrantStatus, LifecycleStatus
from .errors import DomainError, PermissionRefused
from .filters import EntitlementFilter, IdentityFilter, SystemFilter
from .forms import (
    DelegateForm,
    EntitlementForm,
    IdentityCreateForm,
    IdentityForm,
    OwnerForm,
    ReasonForm,
    SystemAdminForm,
    SystemForm,
    add_service_errors,
    add_system_service_errors,
    connector_settings_form,
)
from .models import Entitlement, Grant, Identity, SodRule
from .selectors_connectors import grant_failure_list, settings_shown
from .services import catalogue, connections, delegation, grants, identities, reconciliation
from .views_policy_changes import pending_change_context

PAGE_SIZE = 50


#
# Helpers
#
def order_rows(rows, sort: str, sorts: dict[str, str], *, then: tuple[str, ...] = ("pk",)):
    """Order by an allowed sort key (`-key`: descending), ties by `then`; any other key leaves the order as is.

    `sorts` maps each key a column header offers (the `sort_link` tag) to a field or an alias,
    such as a rank from `selectors.tier_rank`, so nothing outside the list reaches ORDER BY.
    """
    field = sorts.get(sort.lstrip("-"))
    if not field:
        return rows
    return rows.order_by(f"-{field}" if sort.startswith("-") else field, *then)


def _listing(request, queryset, filter_class, sorts: dict[str, str], default: str, *, load=None, keys_for=None) -> dict:
    """Filter, sort by an allowed key and paginate a list; the context every list template expects.

    `load` reads the page's rows from their keys (`DeferredJoinPaginator`), as the template shows them;
    `keys_for(rows, sort)` picks a page's keys another way for some sorts (None: the queryset's slice).
    """
    filterset = filter_class(request.GET or None, queryset=queryset)
    filtered = filterset.is_bound and filterset.is_valid()
    sort = request.GET.get("sort", default)
    rows = order_rows(filterset.qs if filtered else queryset, sort, sorts)
    query = request.GET.copy()
    query.pop("page", None)
    # Where the filters make the keys' query read every match anyway, the page counts them there too.
    counted_with_keys = filtered and getattr(filterset, "reads_every_match", False)
    # Those filters read every match and sort them: a sort's own way to the keys is for the rest.
    keys = keys_for(rows, sort) if keys_for and not counted_with_keys else None
    page = DeferredJoinPaginator(rows, PAGE_SIZE, load=load, keys=keys, count_with_keys=counted_with_keys).get_page(
        request.GET.get("page")
    )
    return {"filter": filterset, "page_obj": page, "querystring": query.urlencode()}


def _get(queryset, pk: int):
    try:
        return queryset.get(pk=pk)
    except queryset.model.DoesNotExist:
        raise Http404 from None


def _through_service(form, call):
    """A form's service call: its result, or None with the service's errors beside the fields
    (a refusal is a 403)."""
    try:
        return call()
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        add_service_errors(form, error)
        return None


def _attempt(request, action, success: str) -> bool:
    """Run a service call; show its outcome as a message. PermissionRefused becomes a 403."""
    try:
        action()
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
        return False
    messages.success(request, success)
    return True


def _form_page(request, form, *, title: str, intro: str = "", back: str, submit: str = "Save"):
    """One page for every edit form; errors sit beside their fields (400 when the form was refused)."""
    return render(
        request,
        "governance/form_page.html",
        {"form": form, "title": title, "intro": intro, "back": back, "submit": submit},
        status=400 if form.errors else 200,
    )


#
# Identities
#
IDENTITY_SORTS = {
    "name": "name",
    "kind": "kind",
    "status": "status",
    "owner": "owner__name",
    "last_used_at": "last_used_at",
}


@login_required
def identity_list(request):
    if not policies.can_view_inventory(request.user):
        raise PermissionDenied("Only owners, approvers, auditors and admins see the whole inventory.")
    context = _listing(
        request,
        selectors.identities_visible_to(user=request.user),
        IdentityFilter,
        IDENTITY_SORTS,
        "name",
        load=selectors.identity_rows,
        keys_for=selectors.identity_keys_by_owner,
    )
    context.update(
        title="Identities",
        intro="Every person and machine that can hold access, and who answers for it.",
        can_create=_can_register(request.user),
    )
    return render_list(request, "governance/identity_list.html", "governance/_identity_results.html", context)


@login_required
def my_identities(request):
    context = _listing(
        request,
        selectors.identities_owned_by(user=request.user),
        IdentityFilter,
        IDENTITY_SORTS,
        "name",
        load=selectors.identity_rows,
    )
    context.update(
        title="My identities",
        intro="The service accounts, keys, workloads and agents you own or back up.",
        mine=True,
        can_create=_can_register(request.user),
    )
    return render_list(request, "governance/identity_list.html", "governance/_identity_results.html", context)


def _can_register(user) -> bool:
    """Admins register anyone; a person in the inventory registers the machines they will own."""
    return policies.is_admin(user) or policies.may_own_machines(user)


@login_required
def identity_detail(request, pk: int):
    identity = _get(selectors.identity_list(user=request.user).select_related("owner__manager"), pk)
    grants_qs = selectors.grant_list(user=request.user).filter(identity=identity)
    # Live rows include those waiting on the system; an active grant past expires_at is shown
    # as expired (not in force) by the shown_status filter, even before the sweep.
    live_grants = list(grants_qs.filter(status__in=GrantStatus.live()).order_by("expires_at", "pk"))
    in_force = set(grants_qs.in_force().values_list("pk", flat=True))
    context = {
        "identity": identity,
        "can_edit": policies.can_edit_identity(request.user, identity),
        "can_manage": (can_manage := policies.can_manage_identity(request.user, identity)),
        "delegates": delegation.delegates_of(identity) if can_manage else [],
        "delegate_form": DelegateForm(),
        "live_grants": live_grants,
        "in_force_count": len(in_force),
        "ended_grants": grants_qs.exclude(status__in=GrantStatus.live()).order_by("-updated_at")[:10],
        "findings": identity.findings.filter(status=FindingStatus.OPEN).select_related("owner_to_act"),
        "owned": identity.owned_identities.order_by("name")[:50],
        "events": selectors.object_events(user=request.user, obj=identity),
        "history": _history_changes(identity),
        "reason_form": ReasonForm(),
    }
    from .views_credentials import may_manage_tokens, tokens_of

    if may_manage_tokens(request.user, identity):
        context["api_tokens"] = tokens_of(identity)
        context["can_manage_tokens"] = True
    return render(request, "governance/identity_detail.html", context)


HISTORY_NOISE = ["updated_at", "created_at"]


def _history_changes(obj, limit: int = 10) -> list[dict]:
    """The latest simple-history rows of `obj`, each with the fields that changed (one query)."""
    records = list(obj.history.select_related("history_user__identity")[: limit + 1])
    rows = []
    for newer, older in zip(records[:limit], [*records[1:], None], strict=False):
        changed = []
        if older is not None:
            delta = newer.diff_against(older, excluded_fields=HISTORY_NOISE)
            changed = [obj._meta.get_field(c.field).verbose_name for c in delta.changes]
        rows.append({"record": newer, "changed": changed})
    return rows


def identity_url(identity) -> str:
    return reverse("governance:identity_detail", args=[identity.pk])


def _editable_identity(request, pk: int, allowed=policies.can_edit_identity) -> Identity:
    identity = _get(selectors.identity_list(user=request.user), pk)
    if not allowed(request.user, identity):
        raise PermissionDenied("Only the identity's owner or an admin may change it.")
    return identity


def _managed_identity(request, pk: int) -> Identity:
    """For what only its owners do (hand over, offboard, delegate): never a delegate."""
    return _editable_identity(request, pk, allowed=policies.can_manage_identity)


@login_required
def identity_create(request):
    if not _can_register(request.user):
        raise PermissionDenied("Your login is not linked to an identity in the inventory.")
    admin = policies.is_admin(request.user)
    me = policies.identity_of(request.user)
    form = IdentityCreateForm(request.POST or None, admin=admin, me=me, initial={"owner": me.pk if me else None})
    if request.method == "POST" and form.is_valid():
        identity = _through_service(
            form,
            lambda: identities.identity_create(
                actor=request.user,
                kind=form.cleaned_data["kind"],
                owner=form.cleaned_data["owner"],
                **form.changes(),
            ),
        )
        if identity is not None:
            messages.success(request, f"{identity} added to the inventory.")
            return redirect("governance:identity_detail", identity.pk)
    return _form_page(
        request,
        form,
        title="Add an identity",
        back=reverse("governance:my_identities"),
        submit="Add",
        intro="A non-human identity needs an active person as its owner.",
    )


@login_required
def identity_edit(request, pk: int):
    identity = _editable_identity(request, pk)
    # A fresh instance: ModelForm validation writes into it, and nothing may leak into `identity`.
    form = IdentityForm(
        request.POST or None, instance=Identity.objects.get(pk=identity.pk), admin=policies.is_admin(request.user)
    )
    if request.method == "POST" and form.is_valid():
        saved = _through_service(
            form,
            lambda: identities.identity_update(identity_id=identity.pk, actor=request.user, changes=form.changes()),
        )
        if saved is not None:
            messages.success(request, f"{identity} updated.")
            return redirect("governance:identity_detail", identity.pk)
    return _form_page(request, form, title=f"Edit {identity}", back=identity_url(identity))


@login_required
def identity_owner(request, pk: int):
    identity = _managed_identity(request, pk)
    form = OwnerForm(
        request.POST or None, initial={"owner": identity.owner_id, "backup_owner": identity.backup_owner_id}
    )
    if request.method == "POST" and form.is_valid():
        try:
            identities.identity_change_owner(
                identity_id=identity.pk,
                actor=request.user,
                owner=form.cleaned_data["owner"],
                backup_owner=form.cleaned_data["backup_owner"],
                reason=form.cleaned_data["reason"],
            )
        except DomainError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Ownership of {identity} updated.")
            return redirect("governance:identity_detail", identity.pk)
    return _form_page(
        request,
        form,
        title=f"Owner of {identity}",
        back=identity_url(identity),
        intro="The owner answers for this identity; the backup owner takes over if the owner leaves.",
    )


def _reason_refused(request, form: ReasonForm) -> None:
    """Say why a reason was refused (missing, or longer than free text may be); nothing was done."""
    if form.has_error("reason", "required"):
        messages.error(request, "Give a reason.")
    else:
        messages.error(request, "Reason: " + " ".join(form.errors["reason"]))


def _reason_action(request, pk: int, service, success: str):
    identity = _editable_identity(request, pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        _reason_refused(request, form)
    else:
        _attempt(
            request,
            lambda: service(identity_id=identity.pk, actor=request.user, reason=form.cleaned_data["reason"]),
            success.format(identity=identity),
        )
    return redirect("governance:identity_detail", identity.pk)


@login_required
@require_POST
def identity_suspend(request, pk: int):
    return _reason_action(request, pk, identities.identity_suspend, "{identity} suspended.")


@login_required
@require_POST
def identity_reactivate(request, pk: int):
    return _reason_action(request, pk, identities.identity_reactivate, "{identity} is active again.")


@login_required
@require_POST
def identity_delegate(request, pk: int):
    """Name a colleague who may keep this identity true, or remove one (`remove=1`)."""
    identity = _managed_identity(request, pk)
    form = DelegateForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("governance:identity_detail", identity.pk)
    delegate, reason = form.cleaned_data["person"], form.cleaned_data["reason"]
    if form.cleaned_data["delegate_id"]:
        service, success = delegation.identity_undelegate, f"{delegate} is no longer a delegate of {identity}."
    else:
        service, success = delegation.identity_delegate, f"{delegate} may now edit and suspend {identity}."
    _attempt(
        request, lambda: service(identity_id=identity.pk, actor=request.user, delegate=delegate, reason=reason), success
    )
    return redirect("governance:identity_detail", identity.pk)


@login_required
def identity_offboard(request, pk: int):
    """GET: what offboarding will do; POST: do it, in one transaction."""
    identity = _managed_identity(request, pk)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            result = identities.identity_offboard(
                identity_id=identity.pk, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request,
                f"{identity} offboarded: {len(result.grants_revoked)} grant(s) being revoked, "
                f"{len(result.transferred)} identity(ies) moved to their backup owner, {len(result.orphaned)} orphaned.",
            )
            return redirect("governance:identity_detail", identity.pk)
    owned = identity.owned_identities.exclude(status="offboarded").select_related("backup_owner").order_by("name")
    context = {
        "identity": identity,
        "form": form,
        "grants": Grant.objects.live().filter(identity=identity).select_related("entitlement__system"),
        "transfers": [i for i in owned if i.backup_owner and i.backup_owner.is_active],
        "orphans": [i for i in owned if not (i.backup_owner and i.backup_owner.is_active)],
    }
    return render(request, "governance/identity_offboard.html", context, status=400 if form.errors else 200)


#
# Systems and the catalogue
#
# Criticality and risk sort by rank (low to critical), not alphabetically.
SYSTEM_SORTS = {"name": "name", "owner": "owner__name", "criticality": "criticality_rank", "status": "status"}


@login_required
def system_list(request):
    if not policies.can_view_inventory(request.user):
        raise PermissionDenied("Only owners, approvers, auditors and admins see the systems.")
    rows = selectors.system_list(user=request.user).alias(criticality_rank=selectors.tier_rank("criticality"))
    context = _listing(request, rows, SystemFilter, SYSTEM_SORTS, "name")
    context["can_create"] = policies.is_admin(request.user)
    return render_list(request, "governance/system_list.html", "governance/_system_results.html", context)


def _system_forms(request, system=None):
    """The page's forms: the system's fields, and for admins the chosen connector's settings."""
    instance = type(system).objects.get(pk=system.pk) if system is not None else None
    if not policies.is_admin(request.user):
        # Owners keep the form without the connector: whatever else is posted is ignored.
        return SystemForm(request.POST or None, instance=instance), None
    form = SystemAdminForm(request.POST or None, instance=instance)
    if request.method == "POST" and "connector" not in request.POST:
        return form, None  # a post without the connector (a script) leaves the connection as it is
    return form, connector_settings_form(form.chosen_connector(), system=system, data=request.POST or None)


def _system_changes(form, settings_form) -> dict | None:
    """Validated input for the service (settings only from admins' pages), or None with errors beside fields."""
    valid = form.is_valid()  # both forms are checked, so every error shows at once
    if not (settings_form is None or settings_form.is_valid()) or not valid:
        return None
    changes = dict(form.cleaned_data)
    if settings_form is not None:
        changes["connector_settings"] = dict(settings_form.cleaned_data)
    return changes


def _save_system(form, settings_form, call):
    try:
        return call()
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        add_system_service_errors(form, settings_form, error)
        return None


def _system_form_page(request, form, settings_form, *, title: str, intro: str, back: str, submit: str, system=None):
    failed = bool(form.errors) or bool(settings_form is not None and settings_form.is_bound and settings_form.errors)
    return render(
        request,
        "governance/system_form.html",
        {
            "form": form,
            "settings_form": settings_form,
            "title": title,
            "intro": intro,
            "back": back,
            "submit": submit,
            "system": system,
        },
        status=400 if failed else 200,
    )


@login_required
def system_create(request):
    """Add a system (admins): its facts, its connector and the connector's settings."""
    if not policies.is_admin(request.user):
        raise PermissionDenied("Only admins add systems.")
    form, settings_form = _system_forms(request)
    if request.method == "POST" and (data := _system_changes(form, settings_form)) is not None:
        system = _save_system(form, settings_form, lambda: catalogue.system_create(actor=request.user, **data))
        if system is not None:
            messages.success(request, f"{system} added. Its owner can now add its entitlements.")
            return redirect("governance:system_detail", system.pk)
    return _system_form_page(
        request,
        form,
        settings_form,
        title="New system",
        intro="Where access is granted. Its owner answers for it; its connector puts grants into it.",
        back=reverse("governance:system_list"),
        submit="Add",
    )


def _system_detail_context(request, system) -> dict:
    return {
        "system": system,
        "entitlements": selectors.entitlement_list(user=request.user).filter(system=system),
        "can_edit": policies.can_edit_system(request.user, system),
        "reason_form": ReasonForm(),
        "events": selectors.object_events(user=request.user, obj=system),
        "settings_shown": settings_shown(system),
        "failed_grants": grant_failure_list(user=request.user).filter(entitlement__system=system).count(),
        "can_reconcile": system.status == "active"
        and reconciliation.can_tell(system.connector)
        and reconciliation.can_fix_drift(request.user, system),
    }


@login_required
def system_detail(request, pk: int):
    system = _get(selectors.system_list(user=request.user), pk)
    return render(request, "governance/system_detail.html", _system_detail_context(request, system))


@login_required
def system_edit(request, pk: int):
    system = _get(selectors.system_list(user=request.user), pk)
    if not policies.can_edit_system(request.user, system):
        raise PermissionDenied("Only the system's owner or an admin may edit it.")
    form, settings_form = _system_forms(request, system)
    if request.method == "POST" and (changes := _system_changes(form, settings_form)) is not None:
        saved = _save_system(
            form,
            settings_form,
            lambda: catalogue.system_update(system_id=system.pk, actor=request.user, changes=changes),
        )
        if saved is not None:
            messages.success(request, f"{system} updated.")
            return redirect("governance:system_detail", system.pk)
    return _system_form_page(
        request,
        form,
        settings_form,
        title=f"Edit {system}",
        intro="",
        back=reverse("governance:system_detail", args=[system.pk]),
        submit="Save",
        system=system,
    )


@login_required
def system_connector_settings(request):
    """The settings fields of the connector picked on an admin's system form (htmx swaps them in)."""
    if not policies.is_admin(request.user):
        raise PermissionDenied("Only admins configure connectors.")
    system = None
    if request.GET.get("system", "").isdigit():
        system = _get(selectors.system_list(user=request.user), int(request.GET["system"]))
    connector = request.GET.get("connector") or (system.connector if system is not None else "manual")
    settings_form = connector_settings_form(connector, system=system)
    if settings_form is None:
        context = {"error": f"There is no connector named “{connector}”."}
        return render(request, "governance/_system_connector_settings.html", context, status=400)
    return render(request, "governance/_system_connector_settings.html", {"settings_form": settings_form})


@login_required
@require_POST
def system_test_connection(request, pk: int):
    """Run the connector's connection test (htmx: the results in place; otherwise the system page with them).

    With `unsaved=1` (an admin's edit form) the connector and settings on the form are tried, unsaved.
    """
    system = _get(selectors.system_list(user=request.user), pk)
    if not policies.can_edit_system(request.user, system):
        raise PermissionDenied("Only the system's owner or an admin may test its connection.")
    unsaved = request.POST.get("unsaved") == "1"
    context = {"system": system, "unsaved": unsaved}
    kwargs: dict = {}
    if unsaved:
        if not policies.is_admin(request.user):
            raise PermissionDenied("Only admins try out connector settings.")
        connector = request.POST.get("connector") or system.connector
        settings_form = connector_settings_form(connector, system=system, data=request.POST)
        if settings_form is None or not settings_form.is_valid():
            context["error"] = "Fix the settings first: " + (
                "; ".join(
                    f"{settings_form.fields[name].label if name in settings_form.fields else name}: {' '.join(errors)}"
                    for name, errors in settings_form.errors.items()
                )
                if settings_form is not None
                else f"there is no connector named “{connector}”."
            )
            return _connection_test_answer(request, context, status=400)
        kwargs = {"connector": connector, "settings": dict(settings_form.cleaned_data)}
    try:
        checks = connections.system_test_connection(system_id=system.pk, actor=request.user, **kwargs)
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        context["error"] = error.message
        return _connection_test_answer(request, context, status=error.status_code)
    passed = sum(1 for item in checks if item.ok)
    context.update(checks=checks, ok=passed == len(checks))
    what, works, fails = (
        ("These settings", "work", "do not work")
        if unsaved
        else (f"The connection to {system}", "works", "does not work")
    )
    if context["ok"]:
        context["summary"] = f"{what} {works}: {'the check' if passed == 1 else f'all {passed} checks'} passed."
    else:
        context["summary"] = f"{what} {fails} yet: {len(checks) - passed} of {len(checks)} checks failed."
    return _connection_test_answer(request, context)


def _connection_test_answer(request, context: dict, status: int = 200):
    if request.htmx:
        return render(request, "governance/_system_connection_test.html", context, status=status)
    if context.get("error"):
        messages.error(request, context["error"])
    else:
        (messages.success if context["ok"] else messages.warning)(request, context["summary"])
    page = _system_detail_context(request, context["system"])
    page["connection_test"] = context
    return render(request, "governance/system_detail.html", page, status=status)


@login_required
@require_POST
def system_retire(request, pk: int):
    system = _get(selectors.system_list(user=request.user), pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        _attempt(
            request,
            lambda: catalogue.system_retire(
                system_id=system.pk, actor=request.user, reason=form.cleaned_data["reason"]
            ),
            f"{system} retired; its entitlements are retired and their grants are being revoked.",
        )
    else:
        _reason_refused(request, form)
    return redirect("governance:system_detail", system.pk)


ENTITLEMENT_SORTS = {"name": "name", "system": "system__name", "risk": "risk_rank", "owner": "owner__name"}


@login_required
def entitlement_list(request):
    rows = selectors.entitlement_list(user=request.user).alias(risk_rank=selectors.tier_rank("risk_tier"))
    context = _listing(
        request, rows, EntitlementFilter, ENTITLEMENT_SORTS, "system", load=selectors_catalogue.entitlement_rows
    )
    return render_list(request, "governance/entitlement_list.html", "governance/_entitlement_results.html", context)


@login_required
def entitlement_detail(request, pk: int):
    entitlement = _get(selectors.entitlement_list(user=request.user), pk)
    return render(
        request,
        "governance/entitlement_detail.html",
        {
            "entitlement": entitlement,
            # Thousands may hold a popular entitlement: a page of holders, soonest expiry first.
            "page_obj": DeferredJoinPaginator(
                selectors.grant_list(user=request.user)
                .filter(entitlement=entitlement, status__in=GrantStatus.live())
                .order_by(F("expires_at").asc(nulls_last=True), "pk"),
                PAGE_SIZE,
            ).get_page(request.GET.get("page")),
            "sod_rules": SodRule.objects.filter(entitlements=entitlement).prefetch_related(
                Prefetch("entitlements", queryset=selectors.entitlement_list(user=request.user))
            ),
            "can_edit": policies.can_edit_entitlement(request.user, entitlement),
            **pending_change_context(request.user, entitlement),
            # Link the system only for those who may see it (its page is a 404 to anyone else).
            "can_view_system": policies.can_view_inventory(request.user)
            or selectors.system_list(user=request.user).filter(pk=entitlement.system_id).exists(),
            "reason_form": ReasonForm(),
        },
    )


@login_required
def entitlement_create(request, pk: int):
    """Add an entitlement to a system: admins, and whoever may edit the system (its owner)."""
    system = _get(selectors.system_list(user=request.user), pk)
    if not policies.can_edit_system(request.user, system):
        raise PermissionDenied("Only the system's owner or an admin may add entitlements to it.")
    back = reverse("governance:system_detail", args=[system.pk])
    if system.status != LifecycleStatus.ACTIVE:
        messages.error(request, f"{system} is retired: it takes no new entitlements.")
        return redirect(back)
    form = EntitlementForm(request.POST or None, instance=Entitlement(system=system))
    if request.method == "POST" and form.is_valid():
        entitlement = _through_service(
            form, lambda: catalogue.entitlement_create(actor=request.user, system=system, **form.changes())
        )
        if entitlement is not None:
            messages.success(request, f"{entitlement} added to the catalogue.")
            return redirect("governance:entitlement_detail", entitlement.pk)
    return _form_page(
        request,
        form,
        title=f"New entitlement in {system}",
        intro="One right in this system: who owns it, how risky it is and who approves a request for it.",
        back=back,
        submit="Add",
    )


@login_required
def entitlement_edit(request, pk: int):
    entitlement = _get(selectors.entitlement_list(user=request.user), pk)
    if not policies.can_edit_entitlement(request.user, entitlement):
        raise PermissionDenied("Only the entitlement's owners or an admin may edit it.")
    form = EntitlementForm(request.POST or None, instance=type(entitlement).objects.get(pk=entitlement.pk))
    if request.method == "POST" and form.is_valid():
        saved = _through_service(
            form,
            lambda: catalogue.entitlement_update(
                entitlement_id=entitlement.pk, actor=request.user, changes=form.changes()
            ),
        )
        if saved is not None:
            held = getattr(saved, "held_policy_change", None)
            if held is None:
                messages.success(request, f"{entitlement} updated.")
            else:
                messages.warning(
                    request,
                    f"{entitlement}: what loosens its policy ({'; '.join(held.loosens)}) waits for another admin's "
                    "approval; the rest of your changes apply now.",
                )
            return redirect("governance:entitlement_detail", entitlement.pk)
    return _form_page(
        request,
        form,
        title=f"Edit {entitlement}",
        intro="Changes apply to new requests; grants already issued keep their expiry.",
        back=reverse("governance:entitlement_detail", args=[entitlement.pk]),
    )


@login_required
@require_POST
def entitlement_retire(request, pk: int):
    entitlement = _get(selectors.entitlement_list(user=request.user), pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        _attempt(
            request,
            lambda: catalogue.entitlement_retire(
                entitlement_id=entitlement.pk, actor=request.user, reason=form.cleaned_data["reason"]
            ),
            f"{entitlement} retired; pending requests closed and live grants being revoked.",
        )
    else:
        _reason_refused(request, form)
    return redirect("governance:entitlement_detail", entitlement.pk)


#
# Grants: where the system owner confirms what the manual connector asked
#
@login_required
def grant_detail(request, pk: int):
    return _render_grant_detail(request, _get(selectors.grant_list(user=request.user), pk))


def _render_grant_detail(request, grant: Grant, reason_form: ReasonForm | None = None, status: int = 200):
    return render(
        request,
        "governance/grant_detail.html",
        {
            "grant": grant,
            "can_confirm": policies.can_confirm_provisioning(request.user, grant),
            "can_revoke": policies.can_revoke_grant(request.user, grant),
            "can_mark_no_renew": not grant.no_renew
            and grant.expires_at is not None
            and grant.is_in_force()
            and policies.can_mark_no_renew(request.user, grant),
            "events": selectors.object_events(user=request.user, obj=grant),
            "reason_form": reason_form or ReasonForm(),
        },
        status=status,
    )


def _grant_action(request, pk: int, action, success: str, *, needs_reason: bool = False):
    """POST only: one grant service on a grant the user may see; the outcome as a message."""
    grant = _get(selectors.grant_list(user=request.user), pk)
    reason = ""
    if needs_reason:
        form = ReasonForm(request.POST)
        if not form.is_valid():
            # Missing or too long: said beside the field, and nothing is done (issue 11).
            return _render_grant_detail(request, grant, reason_form=form, status=400)
        reason = form.cleaned_data["reason"]
    _attempt(request, lambda: action(grant.pk, reason), success)
    return redirect("governance:grant_detail", grant.pk)


@login_required
@require_POST
def grant_confirm_provisioned(request, pk: int):
    return _grant_action(
        request,
        pk,
        lambda g, r: grants.grant_confirm_provisioned(
            grant_id=g, actor=request.user, reference=request.POST.get("reference", "").strip()[:200]
        ),
        "Access confirmed: the grant is active.",
    )


@login_required
@require_POST
def grant_confirm_revoked(request, pk: int):
    return _grant_action(
        request,
        pk,
        lambda g, r: grants.grant_confirm_revoked(grant_id=g, actor=request.user),
        "Removal confirmed: the grant has ended.",
    )


@login_required
@require_POST
def grant_retry_provision(request, pk: int):
    return _grant_action(
        request,
        pk,
        lambda g, r: grants.grant_retry_provision(grant_id=g, actor=request.user),
        "Provisioning asked again: waiting for the system.",
    )


@login_required
@require_POST
def grant_retry_revoke(request, pk: int):
    return _grant_action(
        request,
        pk,
        lambda g, r: grants.grant_retry_revoke(grant_id=g, actor=request.user),
        "Removal asked again: waiting for the system.",
    )


@login_required
@require_POST
def grant_revoke(request, pk: int):
    return _grant_action(
        request,
        pk,
        lambda g, r: grants.grant_revoke(grant_id=g, actor=request.user, reason=r),
        "Revocation requested: waiting for the system.",
        needs_reason=True,
    )
