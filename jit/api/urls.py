from rest_framework.routers import SimpleRouter

from .catalogue import CatalogueViewSet
from .delegations import DelegationViewSet
from .views import AccessRequestViewSet, BreakGlassActivationViewSet, BreakGlassEligibilityViewSet, GrantActionsViewSet

router = SimpleRouter()
router.register("requests", AccessRequestViewSet, basename="access-request")
router.register("catalogue", CatalogueViewSet, basename="catalogue")
# Adds POST grants/{id}/release/ beside the inventory's grant routes (this viewset has only that action).
router.register("grants", GrantActionsViewSet, basename="jit-grant")
router.register("break-glass/eligibilities", BreakGlassEligibilityViewSet, basename="break-glass-eligibility")
router.register("break-glass/activations", BreakGlassActivationViewSet, basename="break-glass-activation")
router.register("delegations", DelegationViewSet, basename="delegation")
urlpatterns = router.urls
