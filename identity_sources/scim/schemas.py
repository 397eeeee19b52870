"""What the endpoint publishes about itself: the schemas it really keeps, and its capabilities.

django-scim2 ships the full RFC 7643 schemas; a conformance checker (and a careful IdP) writes every
attribute a schema lists and expects it back. The portal keeps only what it governs or must give
back to the source, so it publishes trimmed copies: no phone numbers, photos or addresses, and no
`entitlements`, `roles` or `password`, since a source never grants access nor sets a password here.
"""

import copy
from typing import Any

from django.urls import reverse
from django_scim import constants
from django_scim.models import SCIMServiceProviderConfig
from django_scim.schemas import ALL as LIBRARY_SCHEMAS

USER = constants.SchemaURI.USER
GROUP = constants.SchemaURI.GROUP
ENTERPRISE = constants.SchemaURI.ENTERPRISE_USER
MAX_RESULTS = 200

# Per schema: attribute -> the sub-attributes kept (None: a simple attribute).
KEPT: dict[str, dict[str, tuple[str, ...] | None]] = {
    USER: {
        "userName": None,
        "name": ("familyName", "givenName"),
        "displayName": None,
        "title": None,
        "active": None,
        "emails": ("value", "type", "primary"),
        "groups": ("value", "$ref", "display"),
    },
    GROUP: {"displayName": None, "members": ("value", "$ref", "type")},
    ENTERPRISE: {"department": None, "manager": ("value", "$ref")},
}


def _trimmed(schema: dict[str, Any]) -> dict[str, Any]:
    kept = KEPT[schema["id"]]
    schema = copy.deepcopy(schema)
    attributes = []
    for attribute in schema["attributes"]:
        if attribute["name"] not in kept:
            continue
        subs = kept[attribute["name"]]
        if subs is not None:
            attribute["subAttributes"] = [s for s in attribute.get("subAttributes", []) if s["name"] in subs]
        if schema["id"] == GROUP and attribute["name"] == "members":
            for sub in attribute["subAttributes"]:  # members are people of the same source, never groups
                if sub["name"] == "$ref":
                    sub["referenceTypes"] = ["User"]
        if schema["id"] == USER and attribute["name"] == "userName":
            attribute["uniqueness"] = "server"
        if schema["id"] == GROUP and attribute["name"] == "displayName":
            attribute["required"] = True  # RFC 7643 §4.2: "displayName ... REQUIRED" (the library's copy says false)
        attributes.append(attribute)
    schema["attributes"] = attributes
    return schema


def schemas() -> list[dict[str, Any]]:
    """The schemas the Schemas endpoint serves; called per request (URLs are resolved then)."""
    result = []
    for schema in LIBRARY_SCHEMAS:
        if schema["id"] in KEPT:
            trimmed = _trimmed(schema)
            trimmed["meta"] = {
                "resourceType": "Schema",
                "location": reverse("scim:schemas", kwargs={"uuid": schema["id"]}),
            }
            trimmed.setdefault("schemas", ["urn:ietf:params:scim:schemas:core:2.0:Schema"])
            result.append(trimmed)
    return result


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """PATCH and filtering are supported; bulk, sorting, ETags and password changes are not."""

    def to_dict(self) -> dict[str, Any]:
        document = super().to_dict()
        document.update(
            {
                "patch": {"supported": True},
                "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": True, "maxResults": MAX_RESULTS},
                "changePassword": {"supported": False},
                "sort": {"supported": False},
                "etag": {"supported": False},
            }
        )
        return document
