"""Timelines: every request, decision, grant, use and removal around one identity or entitlement,
in the chain's order, from the audit trail (`audit.timeline`), for those who may read its history."""

from audit.timeline import timeline_slice
from audit.trail_pages import Slice

from . import policies
from .audit_names import ENTITLEMENT, IDENTITY
from .models import Entitlement, Identity


def can_view_timeline(user, obj: Identity | Entitlement) -> bool:
    """The timeline is the object's history: auditors and admins, and those who answer for it."""
    return policies.can_view_history(user, obj)


def identity_timeline(*, identity: Identity, oldest_first: bool = False) -> Slice:
    """Its own events, and those of its requests, grants, reviews, findings, break-glass and delegations."""
    return timeline_slice(IDENTITY, identity.pk, oldest_first=oldest_first)


def entitlement_timeline(*, entitlement: Entitlement, oldest_first: bool = False) -> Slice:
    """Its own events (policy changes included), and those of its requests, grants, reviews, findings, break-glass."""
    return timeline_slice(ENTITLEMENT, entitlement.pk, oldest_first=oldest_first)
