"""Filter attribute maps (RFC 7644 §3.4.2.2) onto the columns of the source's records.

django-scim2's parser turns a filter into SQL against these columns; the views then keep the
calling source's rows only.
"""

from django_scim.filters import GroupFilterQuery, UserFilterQuery

from .schemas import ENTERPRISE


class ScimUserFilter(UserFilterQuery):
    attr_map = {
        ("id", None, None): "scim_id",
        ("externalId", None, None): "scim_external_id",
        ("userName", None, None): "user_name",
        ("displayName", None, None): "display_name",
        ("name", "givenName", None): "given_name",
        ("name", "familyName", None): "family_name",
        ("title", None, None): "title",
        ("active", None, None): "active",
        ("emails", None, None): "email",
        ("emails", "value", None): "email",
        ("department", None, ENTERPRISE): "department",
    }


class ScimGroupFilter(GroupFilterQuery):
    attr_map = {
        ("id", None, None): "scim_id",
        ("externalId", None, None): "scim_external_id",
        ("displayName", None, None): "display_name",
    }
