from django.urls import include, path

from . import views, views_queue

app_name = "jit"
urlpatterns = [
    path("request/", views.request_catalogue, name="request_catalogue"),
    path("request/<int:entitlement_id>/", views.request_create, name="request_create"),
    path("request/<int:entitlement_id>/preview/", views.request_preview, name="request_preview"),
    path("requests/", views.request_list, name="request_list"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request_cancel"),
    path("requests/<int:pk>/activate/", views.request_activate, name="request_activate"),
    path("approvals/", views_queue.approval_queue, name="approval_queue"),
    path("approvals/decide/", views_queue.approval_decide_many, name="approval_decide_many"),
    path("approvals/<int:pk>/decide/", views_queue.approval_decide, name="approval_decide"),
    path("approvals/away/", views_queue.approval_absence, name="approval_absence"),
    path("grants/", views.my_grants, name="my_grants"),
    path("grants/<int:pk>/extend/", views.grant_extend, name="grant_extend"),
    path("grants/<int:pk>/release/", views.grant_release, name="grant_release"),
    path("grants/<int:pk>/no-renew/", views.grant_no_renew, name="grant_no_renew"),
    path("notifications/", views.notification_list, name="notification_list"),
    path("notifications/read/", views.notifications_read, name="notifications_read"),
    path("delegations/", include("jit.urls_delegations")),
    path("break-glass/", include("jit.urls_break_glass")),
    path("", include("jit.urls_break_glass_reviews")),
]
