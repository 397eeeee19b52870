"""django-scim2 adapters: SCIM documents in and out, every write through `identity_sources.scim.services`.

The library's adapters write model fields and call `save()`; these parse the document into the
services' data classes instead, so a POST, PUT, PATCH or DELETE is one service call (one
transaction, audited). Reads render the source's record (`ScimUser`, `ScimGroup`).
"""

from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin

from django import db
from django.urls import reverse
from django_scim import constants, exceptions
from django_scim.adapters import SCIMMixin
from django_scim.utils import get_base_scim_location_getter

from governance.errors import DomainError, InvalidTransition, PermissionRefused, ValidationFailed

from ..models_scim import ScimGroup, ScimUser
from . import services
from .patch import apply_operations
from .schemas import ENTERPRISE, GROUP, USER


@contextmanager
def scim_errors():
    """Domain errors as SCIM errors: bad input 400, a clash 409 (`uniqueness`), a refusal 403."""
    try:
        yield
    except services.Conflict as exc:
        raise exceptions.IntegrityError(exc.message, scim_type="uniqueness") from None
    except ValidationFailed as exc:
        raise exceptions.BadRequestError(exc.message, scim_type="invalidValue") from None
    except PermissionRefused as exc:
        raise exceptions.SCIMException(exc.message, status=403) from None
    except InvalidTransition as exc:
        raise exceptions.IntegrityError(exc.message, scim_type="mutability") from None
    except DomainError as exc:  # pragma: no cover - every subclass is named above
        raise exceptions.BadRequestError(exc.message) from None
    except db.IntegrityError:  # two pushes of one userName at once: the database's constraint decides
        raise exceptions.IntegrityError(
            "That value is already in use at this source.", scim_type="uniqueness"
        ) from None


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise exceptions.BadRequestError(f'"{name}" must be a string.', scim_type="invalidValue")
    return value


def _get(document: dict[str, Any], name: str) -> Any:
    """An attribute of a document, its name compared case-insensitively (RFC 7643 §2.1)."""
    return next((value for key, value in document.items() if key.lower() == name.lower()), None)


def _meta(adapter: "PortalAdapter", created, modified) -> dict[str, Any]:
    return {
        "resourceType": adapter.resource_type,
        "created": created.isoformat(),
        "lastModified": modified.isoformat(),
        "location": adapter.location,
    }


class PortalAdapter(SCIMMixin):
    id_field = "scim_id"
    # What each resource type publishes at /ResourceTypes (set by each adapter).
    endpoint = ""
    description = ""
    schema = ""
    schema_extensions: tuple[str, ...] = ()

    @classmethod
    def resource_type_dict(cls, request=None) -> dict[str, Any]:
        path = reverse("scim:resource-types", kwargs={"uuid": cls.resource_type})
        document = {
            "schemas": [constants.SchemaURI.RESOURCE_TYPE],
            "id": cls.resource_type,
            "name": cls.resource_type,
            "endpoint": cls.endpoint,  # relative to the base URL (RFC 7643 §6)
            "description": cls.description,
            "schema": cls.schema,
            "meta": {
                "location": urljoin(get_base_scim_location_getter()(request), path),
                "resourceType": "ResourceType",
            },
        }
        if cls.schema_extensions:
            document["schemaExtensions"] = [{"schema": uri, "required": False} for uri in cls.schema_extensions]
        return document

    @property
    def source(self):
        return self.request.scim_source

    def validate_dict(self, d: dict[str, Any]) -> None:
        if not isinstance(d, dict):
            raise exceptions.BadRequestError("The body must be a JSON object.", scim_type="invalidSyntax")
        super().validate_dict(d)

    def handle_operations(self, operations: list[Any]) -> None:
        """PATCH: the operations applied to the current document, then saved as a PUT of it."""
        document = self.to_dict()
        apply_operations(document, operations, (ENTERPRISE,))
        self.from_dict(document)
        self.save()


class ScimUserAdapter(PortalAdapter):
    url_name = "scim:users"
    resource_type = "User"
    endpoint = "/Users"
    description = "A person: provisioning one creates a human identity in the inventory."
    schema = USER
    schema_extensions = (ENTERPRISE,)

    def __init__(self, obj: ScimUser, request=None):
        super().__init__(obj, request)
        self.data: services.ScimUserData | None = None

    def _manager(self) -> dict[str, Any] | None:
        manager = self.obj.manager
        if manager is None:
            return None
        path = reverse(self.url_name, kwargs={"uuid": manager.scim_id})
        return {"value": manager.scim_id, "$ref": urljoin(get_base_scim_location_getter()(self.request), path)}

    def to_dict(self) -> dict[str, Any]:
        user = self.obj
        name = {k: v for k, v in (("givenName", user.given_name), ("familyName", user.family_name)) if v}
        enterprise = {k: v for k, v in (("department", user.department), ("manager", self._manager())) if v}
        document: dict[str, Any] = {
            "schemas": [USER, *([ENTERPRISE] if enterprise else [])],
            "id": user.scim_id,
            "externalId": user.scim_external_id or None,
            "userName": user.user_name,
            "name": name or None,
            "displayName": user.display_name or None,
            "title": user.title or None,
            "active": user.active,  # None (not said) is left out below
            "emails": user.emails or None,
            "groups": [
                {
                    "value": group.scim_id,
                    "$ref": ScimGroupAdapter(group, self.request).location,
                    "display": group.display_name,
                }
                for group in user.groups.all()
            ]
            or None,
            ENTERPRISE: enterprise or None,
            "meta": _meta(self, user.created_at, user.updated_at),
        }
        return {key: value for key, value in document.items() if value is not None}

    def from_dict(self, d: dict[str, Any]) -> None:
        name = _get(d, "name") or {}
        enterprise = _get(d, ENTERPRISE) or {}
        if not isinstance(name, dict) or not isinstance(enterprise, dict):
            raise exceptions.BadRequestError(
                '"name" and the enterprise extension are objects.', scim_type="invalidValue"
            )
        manager = _get(enterprise, "manager")
        if isinstance(manager, dict):
            manager = _get(manager, "value")
        emails = _get(d, "emails") or []
        if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
            raise exceptions.BadRequestError('"emails" is a list of objects.', scim_type="invalidValue")
        active = _get(d, "active")
        if isinstance(active, str) and active.lower() in ("true", "false"):  # Entra ID sends "False" in PATCH
            active = active.lower() == "true"
        if active is not None and not isinstance(active, bool):
            raise exceptions.BadRequestError('"active" must be true or false.', scim_type="invalidValue")
        self.data = services.ScimUserData(
            user_name=_text(_get(d, "userName"), "userName"),
            external_id=_text(_get(d, "externalId"), "externalId"),
            given_name=_text(_get(name, "givenName"), "name.givenName"),
            family_name=_text(_get(name, "familyName"), "name.familyName"),
            display_name=_text(_get(d, "displayName"), "displayName"),
            emails=[{k: v for k in ("value", "type", "primary") if (v := _get(e, k)) is not None} for e in emails],
            title=_text(_get(d, "title"), "title"),
            department=_text(_get(enterprise, "department"), "department"),
            manager_scim_id=_text(manager, "manager.value"),
            # A new person is active unless said otherwise; later, leaving `active` out (or a PATCH removing
            # it) records "not said", which neither offboards nor rehires anyone.
            active=(None if self.obj.pk else True) if active is None else active,
        )

    def save(self) -> None:
        with scim_errors():
            if self.obj.pk is None:
                self.obj = services.scim_user_create(source=self.source, data=self.data)
            else:
                self.obj = services.scim_user_change(source=self.source, scim_user_id=self.obj.pk, data=self.data)
        self.obj = ScimUser.objects.select_related("manager").get(pk=self.obj.pk)

    def delete(self) -> None:
        with scim_errors():
            services.scim_user_delete(source=self.source, scim_user_id=self.obj.pk)


class ScimGroupAdapter(PortalAdapter):
    url_name = "scim:groups"
    resource_type = "Group"
    endpoint = "/Groups"
    description = "A group as the provider keeps it; membership never grants access in the portal."
    schema = GROUP

    def __init__(self, obj: ScimGroup, request=None):
        super().__init__(obj, request)
        self.data: services.ScimGroupData | None = None

    @property
    def display_name(self) -> str:
        return self.obj.display_name

    def to_dict(self) -> dict[str, Any]:
        group = self.obj
        base = get_base_scim_location_getter()(self.request)
        members = [
            {
                "value": m.scim_id,
                "$ref": urljoin(base, reverse("scim:users", kwargs={"uuid": m.scim_id})),
                "type": "User",
            }
            for m in group.members.all()
        ]
        document = {
            "schemas": [GROUP],
            "id": group.scim_id,
            "externalId": group.scim_external_id or None,
            "displayName": group.display_name,
            "members": members or None,
            "meta": _meta(self, group.created_at, group.updated_at),
        }
        return {key: value for key, value in document.items() if value is not None}

    def from_dict(self, d: dict[str, Any]) -> None:
        members = _get(d, "members")
        if members is not None and (not isinstance(members, list) or not all(isinstance(m, dict) for m in members)):
            raise exceptions.BadRequestError('"members" is a list of objects.', scim_type="invalidValue")
        self.data = services.ScimGroupData(
            display_name=_text(_get(d, "displayName"), "displayName"),
            external_id=_text(_get(d, "externalId"), "externalId"),
            member_scim_ids=[_text(_get(m, "value"), "members.value") for m in members or []],
        )

    def save(self) -> None:
        with scim_errors():
            if self.obj.pk is None:
                self.obj = services.scim_group_create(source=self.source, data=self.data)
            else:
                self.obj = services.scim_group_change(source=self.source, group_id=self.obj.pk, data=self.data)

    def delete(self) -> None:
        with scim_errors():
            services.scim_group_delete(source=self.source, group_id=self.obj.pk)
