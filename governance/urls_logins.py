"""Logins and roles (admins): names under `governance:`."""

from django.urls import path

from . import views_logins

urlpatterns = [
    path("", views_logins.login_list, name="login_list"),
    path("new/", views_logins.login_create, name="login_create"),
    path("<int:pk>/", views_logins.login_detail, name="login_detail"),
    path("<int:pk>/deactivate/", views_logins.login_set_active, {"active": False}, name="login_deactivate"),
    path("<int:pk>/reactivate/", views_logins.login_set_active, {"active": True}, name="login_reactivate"),
    path("<int:pk>/password-reset/", views_logins.login_password_reset, name="login_password_reset"),
]
