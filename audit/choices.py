"""The one registry of audited actions and the channels they arrive by.

Names are dotted `<subject>.<verb>`; later features add their actions here, never ad-hoc strings,
so the audit page can filter by them and reports can rely on them.
"""

from django.db import models


class Channel(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    TASK = "task", "Task"
    CLI = "cli", "Command line"


class ActorType(models.TextChoices):
    USER = "user", "User"
    IDENTITY = "identity", "Identity"
    SYSTEM = "system", "System"


class AuditAction(models.TextChoices):
    # Sessions and roles
    USER_LOGGED_IN = "user.logged_in", "User logged in"
    USER_LOGGED_OUT = "user.logged_out", "User logged out"
    USER_LOGIN_FAILED = "user.login_failed", "Login failed"
    ROLE_ASSIGNED = "role.assigned", "Role assigned"
    ROLE_REMOVED = "role.removed", "Role removed"
    USER_PRIVILEGES_CHANGED = "user.privileges_changed", "Staff or superuser status changed"
    # Evidence leaving the portal
    EXPORT_DOWNLOADED = "export.downloaded", "Export downloaded"
    # Outbox (side effects leaving the portal)
    OUTBOX_DEAD = "outbox.dead", "Outbox message gave up"
    OUTBOX_RETRIED = "outbox.retried", "Outbox message retried"
    # Inventory
    IDENTITY_CREATED = "identity.created", "Identity created"
    IDENTITY_UPDATED = "identity.updated", "Identity updated"
    IDENTITY_OWNER_CHANGED = "identity.owner_changed", "Identity owner changed"
    IDENTITY_SUSPENDED = "identity.suspended", "Identity suspended"
    IDENTITY_REACTIVATED = "identity.reactivated", "Identity reactivated"
    IDENTITY_OFFBOARDED = "identity.offboarded", "Identity offboarded"
    IDENTITY_ORPHANED = "identity.orphaned", "Identity left without owner"
    IDENTITY_DELEGATED = "identity.delegated", "Identity delegated"
    IDENTITY_DELEGATION_REMOVED = "identity.delegation_removed", "Identity delegation removed"
    SYSTEM_CREATED = "system.created", "System created"
    SYSTEM_UPDATED = "system.updated", "System updated"
    SYSTEM_RETIRED = "system.retired", "System retired"
    ENTITLEMENT_CREATED = "entitlement.created", "Entitlement created"
    ENTITLEMENT_UPDATED = "entitlement.updated", "Entitlement updated"
    ENTITLEMENT_RETIRED = "entitlement.retired", "Entitlement retired"
    SOD_RULE_CREATED = "sod_rule.created", "SoD rule created"
    SOD_RULE_UPDATED = "sod_rule.updated", "SoD rule updated"
    SOD_RULE_DEACTIVATED = "sod_rule.deactivated", "SoD rule deactivated"
    SOD_RULE_REACTIVATED = "sod_rule.reactivated", "SoD rule reactivated"
    GRANT_CREATED = "grant.created", "Grant created"
    GRANT_ACTIVATED = "grant.activated", "Grant active"
    GRANT_PROVISION_FAILED = "grant.provision_failed", "Grant provisioning failed"
    GRANT_PROVISION_RETRIED = "grant.provision_retried", "Grant provisioning retried"
    GRANT_REVOKE_REQUESTED = "grant.revoke_requested", "Grant revocation requested"
    GRANT_REVOKED = "grant.revoked", "Grant revoked"
    GRANT_EXPIRING = "grant.expiring", "Grant expiring (sweep)"
    GRANT_EXPIRED = "grant.expired", "Grant expired"
    GRANT_REVOKE_FAILED = "grant.revoke_failed", "Grant revocation failed"
    GRANT_RELEASED = "grant.released", "Grant released early"
    GRANT_RENEWED = "grant.renewed", "Grant renewed"
    GRANT_EXPIRY_WARNED = "grant.expiry_warned", "Holder warned of expiry"
    GRANT_MARKED_NO_RENEW = "grant.marked_no_renew", "Grant marked do-not-renew"
    GRANT_USAGE_RECORDED = "grant.usage_recorded", "Grant usage recorded"
    GRANT_MANUAL_WORK_REMINDED = "grant.manual_work_reminded", "System owner reminded of work by hand"
    GRANT_MANUAL_WORK_ESCALATED = "grant.manual_work_escalated", "Work by hand escalated to admins"
    FINDING_OPENED = "finding.opened", "Hygiene finding opened"
    FINDING_RESOLVED = "finding.resolved", "Hygiene finding resolved"
    IMPORT_APPLIED = "import.applied", "Import applied"
    IMPORT_QUEUED = "import.queued", "Import queued for a worker"
    IMPORT_FINISHED = "import.finished", "Queued import finished"
    # Requests and approvals
    REQUEST_SUBMITTED = "request.submitted", "Request submitted"
    REQUEST_STAGE_APPROVED = "request.stage_approved", "Approval recorded"
    REQUEST_APPROVED = "request.approved", "Request approved"
    REQUEST_AUTO_APPROVED = "request.auto_approved", "Request approved automatically"
    REQUEST_DENIED = "request.denied", "Request denied"
    REQUEST_CANCELLED = "request.cancelled", "Request cancelled"
    REQUEST_TIMED_OUT = "request.timed_out", "Request timed out"
    REQUEST_REMINDED = "request.reminded", "Approvers reminded"
    REQUEST_ESCALATED = "request.escalated", "Request escalated"
    REQUEST_ACTIVATED = "request.activated", "Approved access activated by holder"
    REQUEST_STARTED = "request.started", "Approved access started at its scheduled time"
    REQUEST_ACTIVATION_LAPSED = "request.activation_lapsed", "Approved access not activated in time"
    REQUEST_FAILED = "request.failed", "Approved request could not be fulfilled"
    REQUEST_REFUSED_BY_RETIREMENT = "request.refused_by_retirement", "Request closed: entitlement retired"
    REQUEST_CLOSED_BY_OFFBOARDING = "request.closed_by_offboarding", "Request closed: identity offboarded"
    REQUEST_CLOSED_GRANT_ENDED = "request.closed_grant_ended", "Renewal closed: the grant ended or may not be renewed"
