"""URLs for inventory import (admins; owners for what they own) and export (admins and auditors)."""

from django.urls import path

from governance import views_imports

urlpatterns = [
    path("", views_imports.import_upload, name="import"),
    path("jobs/<int:pk>/", views_imports.import_job_detail, name="import_job"),
    path("template/<str:entity>.csv", views_imports.import_template, name="import_template"),
    path("export/", views_imports.export_download, name="export"),
]
