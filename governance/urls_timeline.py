"""Timelines of an identity and an entitlement (names under `governance:`)."""

from django.urls import path

from . import views_timeline

urlpatterns = [
    path("identities/<int:pk>/timeline/", views_timeline.identity_timeline_page, name="identity_timeline"),
    path("catalogue/<int:pk>/timeline/", views_timeline.entitlement_timeline_page, name="entitlement_timeline"),
]
