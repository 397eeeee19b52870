from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from identity_sources.sso.views import SsoLogoutView

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("health/", views.health, name="health"),
    path("health/ready/", views.health_ready, name="health_ready"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    # Ends the provider's session too when the person signed in through it (identity_sources.sso).
    path("logout/", SsoLogoutView.as_view(), name="logout"),
    path("oidc/", include("identity_sources.sso.urls")),
    path("", include("portal.passwords")),
    path("", include("portal.second_factor")),
    path("", include("portal.profiles")),
    path("audit/", include("audit.urls")),
    path("inventory/", include("governance.urls")),
    path("access/", include("jit.urls")),
    re_path(r"^api/(?P<version>v1)/", include("portal.api_urls")),
    # SCIM 2.0 provisioning for identity providers (identity_sources.scim): its own bearer tokens only.
    path("scim/v2/", include("identity_sources.scim.urls")),
    path("identity-sources/", include("identity_sources.scim.page_urls")),
    path("admin/", admin.site.urls),
]
