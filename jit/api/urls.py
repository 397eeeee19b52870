from rest_framework.routers import SimpleRouter

from .views import AccessRequestViewSet, GrantActionsViewSet

router = SimpleRouter()
router.register("requests", AccessRequestViewSet, basename="access-request")
router.register("jit-grants", GrantActionsViewSet, basename="jit-grant")
urlpatterns = router.urls
