"""`/identity-sources/`: the admins' pages for the identity provider's SCIM sources."""

from django.urls import path

from . import pages

app_name = "identity_sources"

urlpatterns = [
    path("scim/", pages.scim_sources, name="scim_sources"),
    path("scim/new/", pages.scim_source_add, name="scim_source_add"),
    path("scim/<int:pk>/rotate/", pages.scim_source_rotate_token, name="scim_source_rotate"),
    path("scim/<int:pk>/revoke/", pages.scim_source_stop, name="scim_source_revoke"),
]
