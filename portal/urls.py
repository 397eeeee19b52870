from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("health/", views.health, name="health"),
    path("health/ready/", views.health_ready, name="health_ready"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("portal.passwords")),
    path("", include("portal.second_factor")),
    path("audit/", include("audit.urls")),
    path("inventory/", include("governance.urls")),
    path("access/", include("jit.urls")),
    re_path(r"^api/(?P<version>v1)/", include("portal.api_urls")),
    path("admin/", admin.site.urls),
]
