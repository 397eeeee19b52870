from django.urls import path
from rest_framework.routers import SimpleRouter

from .connector_callbacks import WebhookCallbackView
from .federation import TokenExchangeView
from .me import MeView
from .views import EntitlementViewSet, FindingViewSet, GrantViewSet, IdentityViewSet, SystemViewSet

router = SimpleRouter()
router.register("identities", IdentityViewSet, basename="identity")
router.register("systems", SystemViewSet, basename="system")
router.register("entitlements", EntitlementViewSet, basename="entitlement")
router.register("grants", GrantViewSet, basename="grant")
router.register("findings", FindingViewSet, basename="finding")
urlpatterns = [
    path("token/exchange/", TokenExchangeView.as_view(), name="token-exchange"),
    path("me/", MeView.as_view(), name="me"),
    path("connectors/webhook/callback/", WebhookCallbackView.as_view(), name="connector-webhook-callback"),
    *router.urls,
]
