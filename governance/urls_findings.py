"""Hygiene findings pages, mounted under /inventory/findings/."""

from django.urls import path

from . import views_findings

urlpatterns = [
    path("", views_findings.finding_list, name="finding_list"),
]
