"""Findings pages, mounted under /inventory/findings/: the list, every fix (one view), the exception
register, reconcile now. The three drift fixes keep their own addresses (links and tests name them),
served by the one fix view."""

from django.urls import path

from . import views_findings
from .services.finding_fixes import ADOPT, REPROVISION, REVOKE_AT_TARGET

urlpatterns = [
    path("", views_findings.finding_list, name="finding_list"),
    path("exceptions/", views_findings.finding_exception_list, name="finding_exception_list"),
    path("<int:pk>/fix/<slug:action>/", views_findings.finding_fix, name="finding_fix"),
    path(
        "<int:pk>/revoke-at-target/",
        views_findings.finding_fix,
        {"action": REVOKE_AT_TARGET},
        name="finding_revoke_at_target",
    ),
    path("<int:pk>/adopt/", views_findings.finding_fix, {"action": ADOPT}, name="finding_adopt"),
    path("<int:pk>/reprovision/", views_findings.finding_fix, {"action": REPROVISION}, name="finding_reprovision"),
    path("reconcile/<int:system_id>/", views_findings.system_reconcile, name="system_reconcile"),
]
