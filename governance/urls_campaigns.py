"""Certification pages: campaigns (mounted under /inventory/campaigns/) and the reviewer's queue
(`review_urlpatterns`, mounted under /inventory/reviews/). Names are under `governance:`."""

from django.urls import path

from . import views_campaigns as views

urlpatterns = [
    path("", views.campaign_list, name="campaign_list"),
    path("new/", views.campaign_create, name="campaign_create"),
    path("<int:pk>/", views.campaign_detail, name="campaign_detail"),
    path("<int:pk>/edit/", views.campaign_edit, name="campaign_edit"),
    path("<int:pk>/launch/", views.campaign_launch, name="campaign_launch"),
    path("<int:pk>/close/", views.campaign_close, name="campaign_close"),
    path("<int:pk>/cancel/", views.campaign_cancel, name="campaign_cancel"),
    path("<int:pk>/retry/", views.campaign_retry, name="campaign_retry"),
]

review_urlpatterns = [
    path("", views.review_queue_page, name="review_queue"),
    path("decide/", views.review_decide_many, name="review_decide_many"),
    path("<int:pk>/decide/", views.review_decide, name="review_decide"),
    path("<int:pk>/reassign/", views.review_reassign, name="review_reassign"),
]
