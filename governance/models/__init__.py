from .certification import Campaign, CampaignStatus, ReviewItem
from .credentials import ApiToken
from .entitlements import Entitlement, SodRule
from .federation import WorkloadExchange, WorkloadTrust
from .findings import Finding, FindingException
from .grants import Grant
from .identities import Identity
from .imports import ImportJob
from .notifications import Notification
from .policy_changes import PolicyChange, PolicyChangeStatus
from .systems import System

__all__ = [
    "ApiToken",
    "Campaign",
    "CampaignStatus",
    "Entitlement",
    "Finding",
    "FindingException",
    "Grant",
    "Identity",
    "ImportJob",
    "Notification",
    "PolicyChange",
    "PolicyChangeStatus",
    "ReviewItem",
    "SodRule",
    "System",
    "WorkloadExchange",
    "WorkloadTrust",
]
