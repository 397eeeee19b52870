"""Inventory pages. Each part lives in its own urls module; names are all under `governance:`."""

from django.urls import include, path

app_name = "governance"
urlpatterns = [
    path("", include("governance.urls_inventory")),
    path("findings/", include("governance.urls_findings")),
    path("import/", include("governance.urls_imports")),
]
