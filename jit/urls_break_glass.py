"""Break-glass routes, included from `jit.urls` under break-glass/ (names in the jit namespace)."""

from django.urls import path

from . import views_break_glass as views

urlpatterns = [
    path("", views.break_glass, name="break_glass"),
    path("<int:pk>/", views.break_glass_detail, name="break_glass_detail"),
    path("eligibility/", views.eligibility_list, name="break_glass_eligibility_list"),
    path("eligibility/new/", views.eligibility_new, name="break_glass_eligibility_create"),
    path("eligibility/<int:pk>/edit/", views.eligibility_edit, name="break_glass_eligibility_edit"),
    path("eligibility/<int:pk>/renew/", views.eligibility_renew_view, name="break_glass_eligibility_renew"),
    path("eligibility/<int:pk>/revoke/", views.eligibility_revoke_view, name="break_glass_eligibility_revoke"),
]
