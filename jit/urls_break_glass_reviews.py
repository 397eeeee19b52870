"""Break-glass after the fact (reviews, reports, drills), mounted under /access/break-glass/ in the jit namespace."""

from django.urls import path

from . import views_break_glass_reviews as views

urlpatterns = [
    path("break-glass/reviews/", views.review_list, name="break_glass_review_list"),
    path("break-glass/reviews/<int:pk>/", views.review_detail, name="break_glass_review_detail"),
    path("break-glass/report/", views.report, name="break_glass_report"),
    path("break-glass/report.csv", views.report_csv, name="break_glass_report_csv"),
    path("break-glass/drills/", views.drill_list, name="break_glass_drill_list"),
    path("break-glass/drills/new/", views.drill_create, name="break_glass_drill_create"),
    path("break-glass/drills/<int:pk>/cancel/", views.drill_cancel_view, name="break_glass_drill_cancel"),
]
