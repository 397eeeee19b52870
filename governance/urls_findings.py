"""Findings pages, mounted under /inventory/findings/: the list, the fixes of drift, reconcile now."""

from django.urls import path

from . import views_findings

urlpatterns = [
    path("", views_findings.finding_list, name="finding_list"),
    path("<int:pk>/revoke-at-target/", views_findings.finding_revoke_at_target, name="finding_revoke_at_target"),
    path("<int:pk>/adopt/", views_findings.finding_adopt, name="finding_adopt"),
    path("<int:pk>/reprovision/", views_findings.finding_reprovision, name="finding_reprovision"),
    path("reconcile/<int:system_id>/", views_findings.system_reconcile, name="system_reconcile"),
]
