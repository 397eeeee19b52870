from django.urls import path

from . import views

app_name = "audit"
urlpatterns = [
    path("", views.AuditEventListView.as_view(), name="event_list"),
    path("export.csv", views.AuditEventExportView.as_view(), name="event_export"),
]
