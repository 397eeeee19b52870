"""How the audit trail reads: each event as a sentence whose objects are named and linked, and its
data as labelled fields with names, not ids ("Olu Owner approved request #8 for s3-logs-reader").

The trail keeps ids and labels, never foreign keys (it outlives what it describes), and this layer
knows no model above it. So the apps above say how their objects are named: each may have an
`audit_names` module, found the way Django's admin finds `admin.py` (autodiscovery), that calls
`register_kind` and `register_data_keys`. `describe` names a whole page of events with one query per
kind of object on it (a request, a grant, a person...), however long the page: never one per row.
"""

import html
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from django.utils.dateparse import parse_datetime, parse_duration
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.module_loading import autodiscover_modules
from django.utils.safestring import SafeString
from django.utils.timezone import is_aware, localtime

from .choices import ActorType, AuditAction, Channel
from .kernel.html import html_text
from .kernel.links import links_for
from .models import AuditEvent

#
# What the apps above register
#


# Django's `conditional_escape`, `escape`, `mark_safe` and `capfirst` through their lazy-text wrappers cost
# a few µs a call, and a page of 50 events makes some 1,500: these are the same without the wrappers.


def _escape(text: str) -> SafeString:
    """`escape`: text as safe html."""
    return SafeString(html.escape(text))


def _capfirst(text: Any) -> Any:
    if not text:
        return text
    text = str(text)
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Ref:
    """An object as a sentence names it: its name and, when it has one, its page."""

    text: str
    url: str = ""

    def __html__(self) -> str:
        return self._html

    @cached_property
    def _html(self) -> str:
        """Built once: the same person or entitlement is named on many rows of a page."""
        if self.url:
            return SafeString(f'<a href="{html_text(self.url)}">{html_text(self.text)}</a>')
        return SafeString(html_text(self.text))

    def capitalised(self) -> "Ref":
        return Ref(_capfirst(self.text), self.url)


@dataclass(frozen=True)
class Named:
    """One object's name, with the objects it is about (a request's entitlement and beneficiary)."""

    ref: Ref
    related: Mapping[str, Ref] = field(default_factory=dict)


# Names for a batch of primary keys, in one query; a key it does not return is shown by its label.
NamesOf = Callable[[list[int]], Mapping[int, Named]]
# Primary keys of the objects whose name is exactly this text (case aside), for the target search.
Finder = Callable[[str], Iterable[int]]


@dataclass(frozen=True)
class Kind:
    target_type: str  # the model's label, as events store it ("jit.accessrequest")
    noun: str  # what one is called: "request" (a target search reads "request 8" or "request #8")
    names: NamesOf
    find: Finder | None = None


_KINDS: dict[str, Kind] = {}
# Data keys whose integer values are ids of one kind ({"entitlement": "governance.entitlement"}), and
# keys whose lists of integers are ({"grants_revoked": "governance.grant"}): apart, because the same
# word may count in one event what another lists ("entitlements": 29 rows imported).
_DATA_KEYS: dict[str, str] = {}
_DATA_LIST_KEYS: dict[str, str] = {}
# The kind of `actor_identity_id` (machines and agents acting through the API).
_ACTOR_IDENTITY_KIND: list[str] = []
USER_KIND = "auth.user"  # `actor_user_id`, and events about a login


def register_kind(target_type: str, *, noun: str, names: NamesOf, find: Finder | None = None) -> None:
    """Say how objects of `target_type` are named and linked (idempotent: the last call wins)."""
    _KINDS[target_type] = Kind(target_type, noun, names, find)


def register_data_keys(keys: Mapping[str, str], *, lists: bool = False) -> None:
    """Say which data keys hold an id (or, with `lists`, a list of ids) of which kind: they show as names."""
    (_DATA_LIST_KEYS if lists else _DATA_KEYS).update(keys)


def _kind_of_ids(key: str, value: Any) -> tuple[str | None, list[int]]:
    """The kind and ids a data value holds under a registered key; (None, []) when it holds none."""
    kind = _DATA_KEYS.get(key)
    if kind is not None and isinstance(value, int) and not isinstance(value, bool):
        return kind, [value]
    kind = _DATA_LIST_KEYS.get(key)
    if (
        kind is not None
        and isinstance(value, list)
        and value
        and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    ):
        return kind, list(value)
    return None, []


# The link makers of the page `describe` is naming (URL name -> pk -> URL): a `reverse()` each (~30 µs),
# never kept past the page, as `reverse` depends on the request (its script prefix).
_PAGE_LINKS: ContextVar[dict[str, Callable[[int], str]] | None] = ContextVar("audit_page_links", default=None)


def page_links(name: str) -> Callable[[int], str]:
    """pk -> the URL of `name`'s page for that pk (`audit.kernel.links.links_for`), made once a page: a
    `names` function links its rows through it, and several kinds link to the same pages."""
    made = _PAGE_LINKS.get()
    if made is None:
        return links_for(name)
    if name not in made:
        made[name] = links_for(name)
    return made[name]


def register_actor_identity_kind(target_type: str) -> None:
    _ACTOR_IDENTITY_KIND[:] = [target_type]


_discovered = False


def discover() -> None:
    """Import every installed app's `audit_names` module once (they register their kinds)."""
    global _discovered
    if not _discovered:
        autodiscover_modules("audit_names")
        _discovered = True


def kinds() -> Mapping[str, Kind]:
    discover()
    return _KINDS


#
# The sentences. Each action reads as the first of its templates whose names are all known; names
# come from the actor, the target, the target's related objects and the event's data. An action
# without one (added later) reads "<actor>: <its label>, <target>".
#
SENTENCES: dict[str, tuple[str, ...]] = {
    # Sessions, logins and roles
    "user.logged_in": ("{actor} signed in",),
    "user.logged_out": ("{actor} signed out",),
    "user.login_failed": ("A sign-in as {username} failed", "A sign-in failed"),
    "user.locked_out": ("Sign-in as {username} was locked out after repeated failures",),
    "role.assigned": ("{actor} gave {target} the {group} role",),
    "role.removed": ("{actor} took the {group} role from {target}",),
    "user.privileges_changed": ("{actor} changed the staff or superuser status of {target}",),
    "user.created": ("{actor} created the login {target} for {identity}", "{actor} created the login {target}"),
    "user.deactivated": ("{actor} deactivated the login {target}",),
    "user.reactivated": ("{actor} reactivated the login {target}",),
    "user.deleted": ("{actor} deleted the login {target}",),
    "user.password_reset_sent": ("{actor} sent {target} a password reset link",),
    "user.password_changed": ("{actor} changed the password of {target}",),
    "user.second_factor_enrolled": ("{actor} enrolled a second factor for {target}",),
    "user.second_factor_removed": ("{actor} removed the second factor of {target}",),
    "user.time_zone_changed": ("{actor} set their time zone to {after}",),
    "user.sso_linked": ("{actor} linked {target} to {subject} at {issuer}",),
    "user.sso_unlinked": ("{actor} unlinked {target} from {subject} at {issuer}",),
    "user.sso_refused": ("A single sign-on as {subject} was refused: {reason}", "A single sign-on was refused"),
    "user.break_glass_password": ("{actor} signed in with the break-glass password",),
    "role.group_deleted": ("{actor} deleted the role group {target}",),
    "role.permissions_changed": ("{actor} changed the permissions of the role group {target}",),
    # Evidence and side effects
    "export.downloaded": ("{actor} downloaded the {what} export",),
    "outbox.dead": ("Delivering {kind} gave up after {attempts} attempts", "Delivering {kind} gave up"),
    "outbox.retried": ("{actor} retried delivering {kind}",),
    # Identities
    "identity.created": ("{actor} registered {target}",),
    "identity.updated": ("{actor} updated {target}",),
    "identity.moved": ("{actor} moved {target}",),
    "identity.owner_changed": ("{actor} changed the owner of {target}",),
    "identity.suspended": ("{actor} suspended {target}",),
    "identity.reactivated": ("{actor} reactivated {target}",),
    "identity.offboarded": ("{actor} offboarded {target}",),
    "identity.orphaned": ("{target} was left without an owner when {former_owner} left", "{target} lost its owner"),
    "identity.delegated": ("{actor} made {delegate} a delegate of {target}",),
    "identity.delegation_removed": ("{actor} removed {delegate} as a delegate of {target}",),
    "api_token.created": ("{actor} created the API token {name} for {target}",),
    "api_token.rotated": ("{actor} rotated the API token {name} of {target}",),
    "api_token.revoked": ("{actor} revoked the API token {name} of {target}",),
    "api_token.killed": ("{actor} revoked every API token of {target}",),
    "api_token.exchanged": ("{target} exchanged a workload token for an API token",),
    "workload_trust.created": ("{actor} let {target} sign in as the workload {subject}",),
    "workload_trust.revoked": ("{actor} revoked the workload trust {subject} of {target}",),
    # Systems and the catalogue
    "system.created": ("{actor} added the system {target}",),
    "system.updated": ("{actor} updated the system {target}",),
    "system.retired": ("{actor} retired the system {target}",),
    "system.connection_tested": ("{actor} tested the connection to {target}",),
    "system.secrets_rotated": ("{actor} re-encrypted the connector secrets of {target}",),
    "system.reconciled": ("{actor} compared {target} with what its target holds",),
    "entitlement.created": ("{actor} added {target} to the catalogue",),
    "entitlement.updated": ("{actor} updated {target}",),
    "entitlement.retired": ("{actor} retired {target}",),
    "entitlement.policy_change_proposed": ("{actor} proposed loosening the policy of {target}",),
    "entitlement.policy_change_approved": ("{actor} approved loosening the policy of {target}",),
    "entitlement.policy_change_rejected": ("{actor} rejected loosening the policy of {target}",),
    "entitlement.policy_change_withdrawn": ("{actor} withdrew loosening the policy of {target}",),
    "sod_rule.created": ("{actor} created the separation-of-duties rule {target}",),
    "sod_rule.updated": ("{actor} updated the separation-of-duties rule {target}",),
    "sod_rule.deactivated": ("{actor} deactivated the separation-of-duties rule {target}",),
    "sod_rule.reactivated": ("{actor} reactivated the separation-of-duties rule {target}",),
    # Certification
    "campaign.created": ("{actor} created the campaign {target}",),
    "campaign.updated": ("{actor} updated the campaign {target}",),
    "campaign.launched": ("{actor} launched the campaign {target}",),
    "campaign.closed": ("{actor} closed the campaign {target}",),
    "campaign.cancelled": ("{actor} cancelled the campaign {target}",),
    "review.certified": (
        "{actor} certified the access of {identity} to {entitlement} in {campaign}",
        "{actor} certified {identity} in {campaign}",
        "{actor} certified {target}",
    ),
    "review.revoked": (
        "{actor} revoked the access of {identity} to {entitlement} in {campaign}",
        "{actor} revoked {identity} in {campaign}",
        "{actor} revoked {target}",
    ),
    "review.reassigned": ("{actor} reassigned {target} in {campaign}", "{actor} reassigned {target}"),
    "review.reminded": ("{actor} reminded the reviewers of {target}",),
    "review.escalated": ("{actor} escalated the overdue reviews of {target}",),
    # Break-glass
    "break_glass.eligibility_granted": ("{actor} made {identity} eligible to break glass for {entitlement}",),
    "break_glass.eligibility_updated": ("{actor} changed the break-glass eligibility of {identity} for {entitlement}",),
    "break_glass.eligibility_renewed": ("{actor} renewed the break-glass eligibility of {identity} for {entitlement}",),
    "break_glass.eligibility_revoked": ("{actor} revoked the break-glass eligibility of {identity} for {entitlement}",),
    "break_glass.activated": ("{actor} broke the glass: {entitlement} for {identity} ({target})",),
    "break_glass.refused": ("{actor} tried to break the glass for {entitlement} and was refused",),
    "break_glass.reviewed": ("{actor} reviewed {target} of {identity}", "{actor} reviewed {target}"),
    "break_glass.reminded": ("{actor} reminded the reviewers of {target}",),
    "break_glass.escalated": ("{actor} escalated the overdue review of {target}",),
    "break_glass.drill_scheduled": ("{actor} scheduled a break-glass drill for {entitlement}",),
    "break_glass.drill_cancelled": ("{actor} cancelled the break-glass drill for {entitlement}",),
    "break_glass.drill_missed": ("Nobody ran the break-glass drill for {entitlement}",),
    # Grants
    "grant.created": ("{actor} granted {entitlement} to {identity} ({target})", "{actor} created {target}"),
    "grant.activated": ("{identity} now holds {entitlement} ({target} active)", "{target} became active"),
    "grant.provision_failed": ("Putting {entitlement} in place for {identity} failed ({target})",),
    "grant.provision_retried": ("{actor} retried putting {entitlement} in place for {identity} ({target})",),
    "grant.revoke_requested": ("{actor} asked to remove {entitlement} from {identity} ({target})",),
    "grant.revoked": ("{identity} no longer holds {entitlement}: {target} removed",),
    "grant.expiring": ("{target} ran out: {entitlement} of {identity} sent for removal",),
    "grant.expired": ("{identity} no longer holds {entitlement}: {target} expired",),
    "grant.revoke_failed": ("Removing {entitlement} from {identity} failed ({target})",),
    "grant.connector_answered": ("The target answered for {target} ({entitlement} of {identity})",),
    "grant.adopted": ("{actor} adopted access found on the target: {identity} holds {entitlement} ({target})",),
    "holding.revoke_requested": ("{actor} asked to remove the ungoverned account {account} from {system}",),
    "holding.revoked": ("The ungoverned account {account} was removed from {system}",),
    "grant.released": ("{actor} released {target} early ({entitlement} of {identity})",),
    "grant.renewed": ("{actor} renewed {entitlement} for {identity} ({target})",),
    "grant.expiry_warned": ("{identity} was warned that {entitlement} expires ({target})",),
    "grant.marked_no_renew": ("{actor} marked {target} not to be renewed ({entitlement} of {identity})",),
    "grant.usage_recorded": ("{actor} recorded use of {entitlement} by {identity} ({target})",),
    "grant.manual_work_reminded": ("The owner of {system} was reminded to put {target} in place by hand",),
    "grant.manual_work_escalated": ("Putting {target} in place by hand was escalated to the admins",),
    # Findings and imports
    "finding.opened": ("A finding was opened: {target}",),
    "finding.resolved": ("A finding was resolved: {target}",),
    "finding.fixed": (
        "{actor} made {owner} the owner to fix {target}",
        "{actor} fixed {target}: {fix}",
    ),
    "finding.risk_accepted": ("{actor} accepted the risk of {target} until {until}",),
    "finding.exception_expired": ("The accepted risk of {target} expired and the finding reopened",),
    "grant.converted_to_jit": ("{actor} made {target} just-in-time, ending {expires_at}",),
    "import.applied": ("{actor} imported {file_name}", "{actor} loaded {source} data", "{actor} applied an import"),
    "import.queued": ("{actor} queued the import of {file_name}",),
    "import.finished": ("{target} finished: {status}",),
    # Requests and approvals
    "request.submitted": ("{actor} requested {entitlement} for {beneficiary} ({target})",),
    "request.stage_approved": ("{actor} approved stage {stage} of {target} for {entitlement}",),
    "request.approved": ("{actor} approved {target} for {entitlement}", "{actor} approved {target}"),
    "request.auto_approved": ("{target} for {entitlement} was approved automatically by policy",),
    "request.denied": ("{actor} denied {target} for {entitlement}", "{actor} denied {target}"),
    "request.cancelled": ("{actor} cancelled {target} for {entitlement}", "{actor} cancelled {target}"),
    "request.timed_out": ("{target} for {entitlement} timed out",),
    "request.reminded": ("The approvers of {target} for {entitlement} were reminded",),
    "request.escalated": ("{target} for {entitlement} was escalated to more approvers",),
    "request.activated": ("{actor} activated the approved {target} for {entitlement}",),
    "request.started": ("The approved {target} for {entitlement} started at its scheduled time",),
    "request.activation_lapsed": ("The approved {target} for {entitlement} was not activated in time",),
    "request.failed": ("The approved {target} for {entitlement} could not be fulfilled",),
    "request.refused_by_retirement": ("{target} for {entitlement} was closed: the entitlement was retired",),
    "request.closed_by_offboarding": ("{target} for {entitlement} was closed: {identity} was offboarded",),
    "request.closed_grant_ended": ("The renewal {target} for {entitlement} was closed: the grant ended",),
    "request.closed_delegation_revoked": ("{target} for {entitlement} was closed: its delegation was revoked",),
    "request.handed_to_deputy": (
        "{target} for {entitlement} was shared with {deputy}, the deputy of {absent}",
        "{target} was shared with a deputy",
    ),
    "approver.absence_set": ("{actor} is out of office and named {deputy} their deputy",),
    "approver.absence_ended": ("{actor} is back: {deputy} no longer deputises", "{actor} is back"),
    "delegation.created": ("{actor} let {delegate} act on behalf of {delegator}",),
    "delegation.revoked": ("{actor} ended the delegation from {delegator} to {delegate}",),
}

# How a data key reads as a field label; any other key reads as itself ("owner_to_act": "Owner to act").
LABELS: dict[str, str] = {
    "beneficiary": "For",
    "identity": "Identity",
    "entitlement": "Entitlement",
    "duration_seconds": "Duration",
    "approved_duration": "Approved for",
    "start_at": "Starts",
    "activation_deadline": "Activate by",
    "expires_at": "Expires",
    "previous_expires_at": "Expired before",
    "old_expires_at": "Old token expired",
    "ends_at": "Ends",
    "activated_at": "Activated",
    "review_due_at": "Review due",
    "end_reason": "Ended because",
    "incident_reference": "Incident",
    "absent": "Out of office",
    "starts_at": "From",
    "ended_at": "Ended",
    "step_up": "Step-up",
    "quorum": "Approvals needed",
    "approvals": "Approvals so far",
    "renewal_of": "Renews request",
    "renews": "Renews grant",
    "sod_conflicts": "Separation-of-duties conflicts",
    "grants_revoked": "Grants revoked",
    "owner_to_act": "Owner to act",
    "fix": "Fix",
    "evidence": "Evidence",
    "until": "Accepted until",
    "exception": "Exception",
    "rotated_at": "Rotated",
    "auto_approve": "Approved automatically",
    "waited_hours": "Waited (hours)",
    "waiting_seconds": "Waiting",
    "cool_off_seconds": "Locked for",
    "client_ip": "Client address",
    "by_self": "By themself",
    "usable": "Can sign in with it",
    "what": "Export",
    "sha256": "SHA-256",
    "iss": "Issuer",
    "sub": "Subject",
    "jti": "Token id",
    "dry_run": "Dry run",
    "token_minutes": "Token lifetime (minutes)",
}

# Data kept for machines, not read by people: a finding's de-duplication key.
HIDDEN_KEYS: dict[str, frozenset[str]] = {"finding.opened": frozenset({"key"})}
# Keys whose values are codes ("audit_trail", "not_renewed"): read with spaces.
_CODES = frozenset(
    {"what", "kind", "end_reason", "outcome", "status", "decision", "source", "by_rule", "severity", "fix"}
)


def _join(parts: Iterable[Any], separator: str = ", ") -> SafeString:
    """Escape each part (safe ones stay as they are) and join them: a SafeString's join is a plain str."""
    return SafeString(separator.join([html_text(part) for part in parts]))


_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_ISO_DURATION = re.compile(r"^-?P(\d+D)?T?\d")
SYSTEM = Ref("The system")


#
# Reading a page of events
#


@dataclass(frozen=True)
class Field:
    label: str
    value: SafeString


@dataclass(frozen=True)
class Change:
    label: str
    before: SafeString
    after: SafeString


@dataclass
class DescribedEvent:
    """An event as the trail shows it: a sentence, its data as labelled fields, what changed."""

    event: AuditEvent
    sentence: SafeString
    action_label: str
    channel_label: str
    fields: list[Field]
    changes: list[Change]
    changed: bool  # the changes have a before (an update), not only the values set (a creation)
    target_key: str  # "type:id" for "events about it" ("" when the event has no target)
    target_text: str


def describe(events: Sequence[AuditEvent]) -> list[DescribedEvent]:
    """Each event read as a sentence with names; one query per kind of object on the page."""
    known = kinds()
    page = _PAGE_LINKS.set({})
    try:
        names = _fetch_names(events, known)
    finally:
        _PAGE_LINKS.reset(page)
    return [_describe_one(event, names) for event in events]


def _data_refs(data: Mapping[str, Any]) -> Iterable[tuple[str, int]]:
    """(kind, id) of every id the data holds under a registered key, one level into before/after too."""
    for key, value in data.items():
        if isinstance(value, dict) and key in ("before", "after"):
            yield from _data_refs(value)
        elif key in _DATA_KEYS or key in _DATA_LIST_KEYS:
            kind, ids = _kind_of_ids(key, value)
            for pk in ids:
                yield kind, pk


def _fetch_names(events: Sequence[AuditEvent], known: Mapping[str, Kind]) -> dict[str, Mapping[int, Named]]:
    wanted: dict[str, set[int]] = defaultdict(set)
    identity_kind = _ACTOR_IDENTITY_KIND[0] if _ACTOR_IDENTITY_KIND else None
    for event in events:
        if event.target_type in known and event.target_id.isdigit():
            wanted[event.target_type].add(int(event.target_id))
        if event.actor_user_id is not None:
            wanted[USER_KIND].add(event.actor_user_id)
        if event.actor_identity_id is not None and identity_kind:
            wanted[identity_kind].add(event.actor_identity_id)
        if isinstance(event.data, dict):
            for kind, pk in _data_refs(event.data):
                wanted[kind].add(pk)
    return {kind: known[kind].names(sorted(ids)) for kind, ids in wanted.items() if kind in known and ids}


class _Reader:
    """Everything one event's sentence and fields may name, resolved from the page's names."""

    def __init__(self, event: AuditEvent, names: Mapping[str, Mapping[int, Named]]) -> None:
        self.event, self.names = event, names
        self.data: Mapping[str, Any] = event.data if isinstance(event.data, dict) else {}
        target = None
        if event.target_id.isdigit():
            target = names.get(event.target_type, {}).get(int(event.target_id))
        self.target_named = target
        self._actor: Ref | None = None
        if target is not None:
            self.target: Ref | None = target.ref
        elif event.target_type or event.target_label:
            self.target = Ref(event.target_label or f"{event.target_type} {event.target_id}")
        else:
            self.target = None

    def actor(self) -> Ref:
        if self._actor is None:
            self._actor = self._find_actor()
        return self._actor

    def _find_actor(self) -> Ref:
        event = self.event
        if event.actor_type == ActorType.SYSTEM:
            return SYSTEM
        identity_kind = _ACTOR_IDENTITY_KIND[0] if _ACTOR_IDENTITY_KIND else None
        if event.actor_identity_id is not None and identity_kind:
            machine = self.names.get(identity_kind, {}).get(event.actor_identity_id)
            if machine is not None:
                person = self.names.get(USER_KIND, {}).get(event.actor_user_id) if event.actor_user_id else None
                if person is None:
                    return machine.ref
                return Ref(f"{machine.ref.text} (via {person.ref.text})", machine.ref.url)
        if event.actor_user_id is not None:
            person = self.names.get(USER_KIND, {}).get(event.actor_user_id)
            if person is not None:
                return person.ref
        return Ref(event.actor_label)

    def ref(self, kind: str, pk: int) -> Ref:
        named = self.names.get(kind, {}).get(pk)
        if named is not None:
            return named.ref
        noun = _KINDS[kind].noun if kind in _KINDS else kind
        return Ref(f"{noun} #{pk} (deleted)")

    def refs_html(self, key: str, value: Any) -> Ref | SafeString | None:
        """The names behind an id (or ids) under a registered key; None when the value holds none."""
        kind, ids = _kind_of_ids(key, value)
        if kind is None:
            return None
        if isinstance(value, int):
            return self.ref(kind, ids[0])
        return _join(self.ref(kind, pk) for pk in ids)

    def name(self, placeholder: str) -> Any:
        """What `{placeholder}` reads as: a Ref, safe html or text; None when the event does not say."""
        if placeholder == "actor":
            return self.actor()
        if placeholder == "target":
            return self.target
        if placeholder in self.data:
            value = self.data[placeholder]
            refs = self.refs_html(placeholder, value)
            if refs is not None:
                return refs
            if not _empty(value):
                return format_value(placeholder, value, self)
        if self.target_named is not None and placeholder in self.target_named.related:
            return self.target_named.related[placeholder]
        return None


# Placeholders that name a person who may be the actor: "Riya Requester requested db-read for themself".
_MAYBE_THE_ACTOR = frozenset({"beneficiary", "identity", "holder", "delegate"})
THEMSELF = Ref("themself")


@cache
def _pieces(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A template's placeholders, and the html of the text around them (one more than the placeholders)."""
    pieces = _PLACEHOLDER.split(template)
    return tuple(pieces[1::2]), tuple(html.escape(text) for text in pieces[::2])


def _sentence(reader: _Reader, templates: Sequence[str]) -> tuple[SafeString, set[str]]:
    for template in templates:
        placeholders, texts = _pieces(template)
        parts = [texts[0]]
        actor = reader.actor() if "actor" in placeholders else None
        for index, placeholder in enumerate(placeholders):
            value = reader.name(placeholder)
            if value is None:
                break
            if placeholder in _MAYBE_THE_ACTOR and actor is not None and actor.url and value == actor:
                value = THEMSELF
            if index == 0 and not texts[0] and isinstance(value, Ref):
                value = value.capitalised()  # the sentence starts with it
            parts += (html_text(value), texts[index + 1])
        else:
            return SafeString("".join(parts)), set(placeholders)
    return _fallback(reader), {"actor", "target"}


def _fallback(reader: _Reader) -> SafeString:
    said = f"{html_text(reader.actor())}: {html_text(_action_label(reader.event.action).lower())}"
    if reader.target is None:
        return SafeString(said)
    return SafeString(f"{said}, {html_text(reader.target)}")


# An action's and a channel's label by its value, as `AuditAction(action).label` without the enum's lookup.
_ACTION_LABELS: dict[str, Any] = dict(AuditAction.choices)
_CHANNEL_LABELS: dict[str, Any] = dict(Channel.choices)


def _action_label(action: str) -> str:
    return str(_ACTION_LABELS.get(action, action))


def _channel_label(channel: str) -> str:
    return str(_CHANNEL_LABELS.get(channel, channel))


def _describe_one(event: AuditEvent, names: Mapping[str, Mapping[int, Named]]) -> DescribedEvent:
    reader = _Reader(event, names)
    sentence, used = _sentence(reader, SENTENCES.get(event.action, ()))
    fields, changes = _fields(reader, skip=used)
    changed = isinstance(reader.data.get("before"), dict)
    return DescribedEvent(
        event=event,
        sentence=sentence,
        action_label=_action_label(event.action),
        channel_label=_channel_label(event.channel),
        fields=fields,
        changes=changes,
        changed=changed,
        target_key=f"{event.target_type}:{event.target_id}" if event.target_type else "",
        target_text=reader.target.text if reader.target is not None else "",
    )


#
# Data as labelled fields
#


@lru_cache(maxsize=1024)
def label_of(key: str) -> str:
    return LABELS.get(key) or _capfirst(key.replace("_", " "))


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


_NOTHING, _DASH, _YES, _NO = SafeString(""), SafeString("—"), SafeString("yes"), SafeString("no")


def _fields(reader: _Reader, *, skip: set[str]) -> tuple[list[Field], list[Change]]:
    fields: list[Field] = []
    changes: list[Change] = []
    data = reader.data
    before, after = data.get("before"), data.get("after")
    if isinstance(before, dict) or isinstance(after, dict):
        before = before if isinstance(before, dict) else {}
        after = after if isinstance(after, dict) else {}
        for key in sorted(set(before) | set(after)):
            old, new = before.get(key), after.get(key)
            if not before and _empty(new):
                continue  # a creation: only the values it set
            changes.append(
                Change(
                    label_of(key),
                    format_value(key, old, reader) if before else _NOTHING,
                    format_value(key, new, reader),
                )
            )
    hidden = HIDDEN_KEYS.get(reader.event.action, ())
    about_a_login = reader.event.target_type == USER_KIND
    for key in sorted(data):
        value = data[key]
        if key in skip or key in ("before", "after") or _empty(value):
            continue
        if key == "user" and about_a_login:
            continue  # the login's name: the sentence names it already
        if key in hidden:
            continue
        fields.append(Field(label_of(key), format_value(key, value, reader)))
    return fields, changes


def format_value(key: str, value: Any, reader: _Reader | None = None) -> SafeString:
    """One data value as people read it: names for ids, local times, durations in words, yes or no."""
    if reader is not None:
        refs = reader.refs_html(key, value)
        if refs is not None:
            return refs.__html__()
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return _YES if value else _NO
    if isinstance(value, int | float) and key.endswith("_seconds"):
        return _escape(duration_words(timedelta(seconds=value)))
    if isinstance(value, str):
        return _escape(value.replace("_", " ") if key in _CODES else _text(value))
    if isinstance(value, dict):
        if "name" in value and isinstance(value["name"], str):
            return _escape(value["name"])
        return SafeString(
            "; ".join(
                f"{html_text(label_of(str(k)))}: {html_text(format_value(str(k), v, reader))}" for k, v in value.items()
            )
        )
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            items = "".join(f"<li>{html_text(_item(item, reader))}</li>" for item in value)
            return SafeString(f'<ul class="compact">{items}</ul>')
        return _join(format_value(key, item, reader) for item in value)
    return _escape(str(value))


def _item(item: Mapping[str, Any], reader: _Reader | None) -> SafeString:
    """One entry of a list of records: a policy condition, a connection check, an approval stage."""
    if "approver" in item and "quorum" in item:
        group = f" “{item['group']}”" if item.get("group") else ""
        quorum = item["quorum"]
        many = f", {quorum} approvals" if isinstance(quorum, int) and quorum > 1 else ""
        return SafeString(f"{html_text(str(item['approver']).replace('_', ' '))}{html_text(group)}{html_text(many)}")
    if "detail" in item:
        held = item.get("held")
        mark = "" if held is None else (" ✓" if held else " ✗ not met")
        return SafeString(f"{html_text(item['detail'])}{html_text(mark)}")
    if "name" in item and "ok" in item:
        return SafeString(f"{html_text(item['name'])}: {'ok' if item['ok'] else 'failed'}")
    return format_value("", dict(item), reader)


def _text(value: str) -> str:
    """A stored string, read: a time in the viewer's zone, an ISO duration in words, else itself."""
    if _ISO_MOMENT.match(value):
        moment = parse_datetime(value)
        if moment is not None:
            return moment_text(moment)
    if _ISO_DURATION.match(value):
        duration = parse_duration(value)
        if duration is not None:
            return duration_words(duration)
    return value


def moment_text(moment: datetime) -> str:
    """A time in the active zone (the viewer's), to the second, with the zone's abbreviation."""
    if not is_aware(moment):
        return date_format(moment, "Y-m-d H:i:s T")
    # date_format(local, "Y-m-d H:i:s T"), written out: Django's formatter makes a method call a character.
    local = localtime(moment)
    zone = local.tzinfo
    # As its "T": nothing for a wall time the zone passes twice or skips.
    ambiguous = zone.utcoffset(local.replace(fold=not local.fold)) != zone.utcoffset(local)
    day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    return (
        f"{day} {local.hour:02d}:{local.minute:02d}:{local.second:02d} {'' if ambiguous else str(zone.tzname(local))}"
    )


def duration_words(duration: timedelta) -> str:
    """A duration in its largest whole units: "1 day 2 hours", "30 minutes", "45 seconds"."""
    seconds = int(duration.total_seconds())
    if seconds <= 0:
        return "0 seconds"
    parts = []
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
        if len(parts) == 2:
            break
    return " ".join(parts)


#
# The target search: exact names, never a substring of a label
#
def targets_named(text: str) -> dict[str, list[str]]:
    """The targets (kind -> ids as the trail stores them) called exactly `text`, case aside.

    "request #8" (a kind's noun and a number) is that object; any other text is looked up by each
    kind's exact-name finder (one small query per kind that has one).
    """
    text = " ".join(text.split())
    found: dict[str, list[str]] = {}
    numbered = re.fullmatch(r"(.+?)\s*#?\s*(\d+)", text)
    for kind in kinds().values():
        if numbered and numbered.group(1).lower() == kind.noun.lower():
            found.setdefault(kind.target_type, []).append(numbered.group(2))
        elif kind.find is not None:
            ids = [str(pk) for pk in kind.find(text)]
            if ids:
                found.setdefault(kind.target_type, []).extend(ids)
    return found
