"""Inventory pages. Each part lives in its own urls module; names are all under `governance:`."""

from django.urls import include, path

from . import urls_campaigns, views_sod

app_name = "governance"
urlpatterns = [
    path("", include("governance.urls_inventory")),
    path("", include("governance.urls_timeline")),
    path("findings/", include("governance.urls_findings")),
    path("import/", include("governance.urls_imports")),
    path("logins/", include("governance.urls_logins")),
    path("certification/", include("governance.urls_certification_reports")),
    path("campaigns/", include("governance.urls_campaigns")),
    path("reviews/", include(urls_campaigns.review_urlpatterns)),
    # Separation-of-duties rules: few routes, kept here beside the parts they sit with.
    path("sod-rules/", views_sod.sod_rule_list, name="sod_rule_list"),
    path("sod-rules/new/", views_sod.sod_rule_create, name="sod_rule_create"),
    path("sod-rules/<int:pk>/edit/", views_sod.sod_rule_edit, name="sod_rule_edit"),
    path("sod-rules/<int:pk>/deactivate/", views_sod.sod_rule_deactivate, name="sod_rule_deactivate"),
    path("sod-rules/<int:pk>/reactivate/", views_sod.sod_rule_reactivate, name="sod_rule_reactivate"),
]
