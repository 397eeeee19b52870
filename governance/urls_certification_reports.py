"""Certification reports for auditors, mounted under /inventory/certification/reports/."""

from django.urls import path

from . import views_certification_reports as views

urlpatterns = [
    path("reports/campaigns/<int:pk>/", views.report_campaign, name="report_campaign"),
    path("reports/campaigns/<int:pk>.csv", views.report_campaign_csv, name="report_campaign_csv"),
    path("reports/campaigns/<int:pk>.pdf", views.report_campaign_pdf, name="report_campaign_pdf"),
    path("reports/not-certified/", views.report_not_certified, name="report_not_certified"),
    path("reports/not-certified.csv", views.report_not_certified_csv, name="report_not_certified_csv"),
    path("reports/held-access/", views.report_held_access, name="report_held_access"),
    path("reports/held-access.csv", views.report_held_access_csv, name="report_held_access_csv"),
]
