"""The SCIM endpoints: django-scim2's views, with what the portal adds around them.

- `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) on reads and searches;
- `count` capped at the published maximum, results in creation order, related rows fetched per page
  (a constant number of queries however many people a page holds);
- every resource scoped to the calling source (another source's people answer 404);
- SCIM-shaped errors for an unknown address and for the unsupported root search.
"""

import json
from typing import Any

from django.db.models import Model, QuerySet, prefetch_related_objects
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django_scim import constants, exceptions
from django_scim import views as library

from .schemas import MAX_RESULTS, schemas

ALWAYS_RETURNED = {"id", "schemas"}


def scim_error(status: int, detail: str, scim_type: str | None = None) -> HttpResponse:
    body: dict[str, Any] = {"schemas": [constants.SchemaURI.ERROR], "detail": detail, "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    return HttpResponse(json.dumps(body), status=status, content_type=constants.SCIM_CONTENT_TYPE)


def source_filter_kwargs_getter(model):
    """GET_EXTRA_MODEL_FILTER_KWARGS_GETTER: a source sees and changes only what it provisioned."""

    def get_extra_filter_kwargs(request, *args, **kwargs) -> dict[str, Any]:
        return {"source_id": request.scim_source.pk}

    return get_extra_filter_kwargs


def _names(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def _project(resource: dict[str, Any], attributes: list[str], excluded: list[str]) -> dict[str, Any]:
    """Keep only `attributes` (plus what is always returned), or drop `excluded`; names are
    case-insensitive and may be full URNs (`urn:...:User:title`) or `parent.sub`."""

    def top(name: str) -> str:
        for schema in resource.get("schemas", []):
            if name.lower().startswith(schema.lower() + ":"):
                name = name[len(schema) + 1 :] if schema == resource["schemas"][0] else schema
                break
        return name.split(".", 1)[0].lower()

    if attributes:
        wanted = {top(a) for a in attributes} | ALWAYS_RETURNED
        return {k: v for k, v in resource.items() if k.lower() in wanted}
    if excluded:
        dropped = {top(a) for a in excluded} - ALWAYS_RETURNED
        return {k: v for k, v in resource.items() if k.lower() not in dropped}
    return resource


class ScimViewMixin:
    prefetch: tuple[str, ...] = ()

    def _projection(self, request) -> tuple[list[str], list[str]]:
        if request.method == "POST" and request.path.endswith(".search"):
            body = json.loads(request.body or b"{}")
            return _names(body.get("attributes")), _names(body.get("excludedAttributes"))
        return _names(request.GET.get("attributes")), _names(request.GET.get("excludedAttributes"))

    @method_decorator(csrf_exempt)  # a bearer token, never a cookie: no cross-site request to forge
    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        if response.status_code != 200 or request.method not in ("GET", "POST") or not response.content:
            return response
        try:
            attributes, excluded = self._projection(request)
        except ValueError:
            return response
        if not attributes and not excluded:
            return response
        document = json.loads(response.content)
        if "Resources" in document:
            document["Resources"] = [_project(r, attributes, excluded) for r in document["Resources"]]
        else:
            document = _project(document, attributes, excluded)
        response.content = json.dumps(document)
        return response

    def _page(self, request):
        start, count = super()._page(request)
        if count is not None and count < 0:
            count = 0
        return start, min(count if count is not None else MAX_RESULTS, MAX_RESULTS)

    def _build_response(self, request, qs, start, count):
        """One page: counted in SQL when it can be, its related rows fetched once for the whole page."""
        if isinstance(qs, QuerySet):
            total = qs.count()
            page = list(qs.order_by("pk")[start - 1 : start - 1 + count])
        else:  # a filter's results, already read and scoped (the library filters them in Python)
            rows = sorted(qs, key=lambda obj: obj.pk)
            total, page = len(rows), rows[start - 1 : start - 1 + count]
        prefetch_related_objects(page, *self.prefetch)
        resources = [self.scim_adapter(obj, request=request).to_dict() for obj in page]
        document = {
            "schemas": [constants.SchemaURI.LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": len(resources),
            "startIndex": start,
            "Resources": resources,
        }
        return HttpResponse(json.dumps(document), content_type=constants.SCIM_CONTENT_TYPE)

    def get_object(self) -> Model:
        obj = super().get_object()
        prefetch_related_objects([obj], *self.prefetch)
        return obj


class UsersView(ScimViewMixin, library.UsersView):
    prefetch = ("manager", "groups")

    def patch(self, request, *args, **kwargs):
        """PATCH as one service call (the adapter applies the operations, then saves once): no outer
        transaction, so the service owns its own and can retry it on a deadlock."""
        obj = self.get_object()
        adapter = self.scim_adapter(obj, request=request)
        body = self.load_body(request.body)
        if body.get("schemas") not in (None, [constants.SchemaURI.PATCH_OP]):
            raise exceptions.BadRequestError("PATCH needs the PatchOp schema.", scim_type="invalidSyntax")
        if not body.get("Operations"):
            raise exceptions.BadRequestError("PATCH call made without operations array", scim_type="invalidSyntax")
        adapter.handle_operations(body["Operations"])
        prefetch_related_objects([adapter.obj], *self.prefetch)
        response = HttpResponse(json.dumps(adapter.to_dict()), content_type=constants.SCIM_CONTENT_TYPE)
        response["Location"] = adapter.location
        return response


class GroupsView(ScimViewMixin, library.GroupsView):
    prefetch = ("members",)
    patch = UsersView.patch


class UserSearchView(ScimViewMixin, library.UserSearchView):
    prefetch = ("manager", "groups")


class GroupSearchView(ScimViewMixin, library.GroupSearchView):
    prefetch = ("members",)


class SchemasView(library.SchemasView):
    """The trimmed schemas (see `schemas`), read per request so their locations resolve."""

    def get(self, request, uuid=None, *args, **kwargs):
        by_id = {s["id"]: s for s in schemas()}
        if uuid:
            if uuid not in by_id:
                return scim_error(404, f"No schema {uuid}.")
            document = by_id[uuid]
        else:
            found = sorted(by_id.values(), key=lambda s: s["id"])
            document = {
                "schemas": [constants.SchemaURI.LIST_RESPONSE],
                "totalResults": len(found),
                "itemsPerPage": len(found),
                "startIndex": 1,
                "Resources": found,
            }
        return HttpResponse(json.dumps(document), content_type=constants.SCIM_CONTENT_TYPE)


class ResourceTypesView(library.ResourceTypesView):
    def get(self, request, uuid=None, *args, **kwargs):
        if uuid and uuid not in self.type_dict_by_type_id(request):
            return scim_error(404, f"No resource type {uuid}.")
        response = super().get(request, uuid, *args, **kwargs)
        if not uuid:  # the library's list lacks the counts a ListResponse carries
            document = json.loads(response.content)
            count = len(document["Resources"])
            document.update({"totalResults": count, "itemsPerPage": count, "startIndex": 1})
            response.content = json.dumps(document)
        return response


class ServiceProviderConfigView(library.ServiceProviderConfigView):
    pass


class NotImplementedView(library.SCIMView):
    """Root search (across resource types), /Me and /Bulk: authenticated, then 501 as a SCIM error."""

    def get(self, request, *args, **kwargs):
        return scim_error(501, "Not supported by this service provider.")

    post = put = patch = delete = get


class UnknownView(library.SCIMView):
    def get(self, request, *args, **kwargs):
        return scim_error(404, "No such SCIM endpoint.")

    post = put = patch = delete = get
