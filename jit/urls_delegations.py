from django.urls import path

from . import views_delegations as views

urlpatterns = [
    path("", views.delegation_list, name="delegation_list"),
    path("new/", views.delegation_create, name="delegation_create"),
    path("<int:pk>/revoke/", views.delegation_revoke, name="delegation_revoke"),
]
