"""Inventory pages: identities, systems, the catalogue and grants (names under `governance:`)."""

from django.urls import path

from . import (
    views,
    views_credentials,
    views_federation,
    views_grant_failures,
    views_people,
    views_policy_changes,
    views_stage_builder,
)

urlpatterns = [
    path("identities/", views.identity_list, name="identity_list"),
    path("identities/new/", views.identity_create, name="identity_create"),
    path("identities/<int:pk>/", views.identity_detail, name="identity_detail"),
    path("identities/<int:pk>/edit/", views.identity_edit, name="identity_edit"),
    path("identities/<int:pk>/owner/", views.identity_owner, name="identity_owner"),
    path("identities/<int:pk>/suspend/", views.identity_suspend, name="identity_suspend"),
    path("identities/<int:pk>/reactivate/", views.identity_reactivate, name="identity_reactivate"),
    path("identities/<int:pk>/offboard/", views.identity_offboard, name="identity_offboard"),
    path("identities/<int:pk>/delegates/", views.identity_delegate, name="identity_delegate"),
    path("identities/<int:pk>/tokens/new/", views_credentials.api_token_create, name="api_token_create"),
    path(
        "identities/<int:pk>/tokens/<int:token_pk>/rotate/", views_credentials.api_token_rotate, name="api_token_rotate"
    ),
    path(
        "identities/<int:pk>/tokens/<int:token_pk>/revoke/", views_credentials.api_token_revoke, name="api_token_revoke"
    ),
    path("identities/<int:pk>/trusts/new/", views_federation.workload_trust_create, name="workload_trust_create"),
    path(
        "identities/<int:pk>/trusts/<int:trust_pk>/revoke/",
        views_federation.workload_trust_revoke,
        name="workload_trust_revoke",
    ),
    path("mine/", views.my_identities, name="my_identities"),
    path("people/search/", views_people.people_search, name="people_search"),
    path("systems/", views.system_list, name="system_list"),
    path("systems/new/", views.system_create, name="system_create"),
    path("systems/<int:pk>/", views.system_detail, name="system_detail"),
    path("systems/<int:pk>/edit/", views.system_edit, name="system_edit"),
    path("systems/<int:pk>/test-connection/", views.system_test_connection, name="system_test_connection"),
    path("systems/connector-settings/", views.system_connector_settings, name="system_connector_settings"),
    path("systems/<int:pk>/retire/", views.system_retire, name="system_retire"),
    path("systems/<int:pk>/entitlements/new/", views.entitlement_create, name="entitlement_create"),
    path("catalogue/", views.entitlement_list, name="entitlement_list"),
    path("catalogue/<int:pk>/", views.entitlement_detail, name="entitlement_detail"),
    path("catalogue/<int:pk>/edit/", views.entitlement_edit, name="entitlement_edit"),
    path("catalogue/<int:pk>/retire/", views.entitlement_retire, name="entitlement_retire"),
    path(
        "catalogue/approval-stages/",
        views_stage_builder.approval_stages_builder,
        name="approval_stages_builder",
    ),
    *(
        path(
            f"policy-changes/<int:pk>/{decision}/",
            views_policy_changes.policy_change_decide,
            {"decision": decision},
            name=f"policy_change_{decision}",
        )
        for decision in views_policy_changes.DECISIONS
    ),
    path("grants/failures/", views_grant_failures.grant_failures, name="grant_failures"),
    path("grants/failures/count/", views_grant_failures.grant_failures_count, name="grant_failures_count"),
    path("grants/failures/retry/", views_grant_failures.grant_failures_retry, name="grant_failures_retry"),
    path("grants/<int:pk>/", views.grant_detail, name="grant_detail"),
    path("grants/<int:pk>/confirm-granted/", views.grant_confirm_provisioned, name="grant_confirm_provisioned"),
    path("grants/<int:pk>/confirm-removed/", views.grant_confirm_revoked, name="grant_confirm_revoked"),
    path("grants/<int:pk>/retry-removal/", views.grant_retry_revoke, name="grant_retry_revoke"),
    path("grants/<int:pk>/retry-granting/", views.grant_retry_provision, name="grant_retry_provision"),
    path("grants/<int:pk>/revoke/", views.grant_revoke, name="grant_revoke"),
]
