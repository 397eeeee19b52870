"""A believable demo organisation for `manage.py seed_demo`, from 60 identities to 100,000 and more.

Teams of people with managers, their service accounts, API keys, workloads and AI agents; the
systems they run on and an entitlement catalogue at every risk tier; standing and just-in-time
grants; and a few of everything hygiene should catch (orphaned, stale, overdue rotation, secrets in
code, standing admin access, SoD conflicts, an entitlement whose owner left, JIT renewed forever).

Everything is written with bulk inserts in batches of BATCH_SIZE and recorded as one summary
audit event. Named rows and the catalogue always get their django-simple-history rows; generated
identities and grants get them too up to HISTORY_UP_TO identities (the demo sizes), and not above
(benchmark sizes, where they would double the time) unless asked. Recorded as one summary audit event: seeding is one act, not a hundred thousand decisions. The
demo logins of portal/demo.py are linked to people here, so each role has something to see.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from audit.choices import AuditAction
from audit.services import Actor, audit_event_record

from .choices import (
    ApproverSource,
    CredentialType,
    GrantKind,
    GrantStatus,
    IdentityKind,
    IdentityStatus,
    RiskTier,
    SecretLocation,
    SodAction,
)
from .models import Entitlement, Grant, Identity, SodRule, System

BATCH_SIZE = 5000
HISTORY_UP_TO = 10_000
NAMED_MACHINES = 8  # the demo logins' own machines (_named_machines)
MARKER = "demo:org"  # external_id of the first system: its presence means the organisation exists

TEAMS = ["Platform", "Payments", "Data", "Security", "Sales Ops", "Machine Learning", "Identity", "Support"]

FIRST_NAMES = [
    "Amara",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Liam",
    "Maya",
    "Nikhil",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Xavier",
    "Yara",
    "Zoltan",
    "Aisha",
    "Bruno",
    "Carmen",
    "Diego",
    "Emeka",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Julia",
]
LAST_NAMES = [
    "Adeyemi",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ibrahim",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quispe",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ueda",
    "Varga",
    "Wagner",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Andersen",
    "Brown",
    "Chen",
    "Silva",
]

# Named people: (key, name, team, manager key, demo login or None).
PEOPLE = [
    ("cto", "Morgan Chief", "Platform", None, None),
    ("ciso", "Dana Shield", "Security", "cto", None),
    ("admin", "Sam Admin", "Security", "ciso", "admin"),
    ("auditor", "Ada Auditor", "Security", "ciso", "auditor"),
    ("owner", "Olu Owner", "Platform", "cto", "owner"),
    ("approver", "Alex Approver", "Payments", "cto", "approver"),
    ("requester", "Riya Requester", "Payments", "approver", "requester"),
    ("data_lead", "Priya Datta", "Data", "cto", None),
    ("sales_lead", "Marco Venditti", "Sales Ops", "cto", None),
    ("ml_lead", "Lena Neuron", "Machine Learning", "cto", None),
    ("support_lead", "Tom Helpdesk", "Support", "cto", None),
    ("leaver", "Pat Leaver", "Data", "data_lead", None),  # offboarded: leaves orphans behind
]
TEAM_LEAD = {
    "Platform": "owner",
    "Payments": "approver",
    "Data": "data_lead",
    "Security": "ciso",
    "Sales Ops": "sales_lead",
    "Machine Learning": "ml_lead",
    "Identity": "admin",
    "Support": "support_lead",
}

# Systems: (key, name, owner key, criticality, description).
SYSTEMS = [
    ("aws", "AWS production", "owner", "critical", "Production AWS accounts (EKS, RDS, S3)."),
    ("payments_db", "Payments DB", "owner", "critical", "PostgreSQL cluster holding payments and payees."),
    ("k8s", "Kubernetes prod", "owner", "high", "Production Kubernetes clusters."),
    ("github", "GitHub", "admin", "high", "Source code, CI/CD and deploy keys."),
    ("snowflake", "Snowflake", "data_lead", "high", "Analytics warehouse with customer data."),
    ("salesforce", "Salesforce", "sales_lead", "medium", "CRM: accounts, opportunities, contracts."),
    ("vault", "HashiCorp Vault", "ciso", "critical", "Secrets manager."),
    ("datadog", "Datadog", "owner", "medium", "Monitoring and logs."),
    ("jira", "Jira", "support_lead", "low", "Tickets and projects."),
    ("ml_platform", "ML platform", "ml_lead", "high", "Model training, feature store, inference endpoints."),
]

# Entitlements: (key, system key, name, risk tier, owner key, purpose, extra fields).
ENTITLEMENTS = [
    ("aws_read", "aws", "ReadOnlyAccess", "low", "owner", "Inspect production resources.", {}),
    ("aws_deploy", "aws", "DeployRole", "high", "owner", "Deploy services to production.", {}),
    (
        "aws_admin",
        "aws",
        "AdministratorAccess",
        "critical",
        "owner",
        "Emergency administration of production.",
        {"break_glass_eligible": True, "ticket_required": True},
    ),
    ("aws_s3_logs", "aws", "s3-logs-reader", "medium", "owner", "Read application logs in S3.", {}),
    ("pay_read", "payments_db", "payments_readonly", "medium", "owner", "Query payments for support cases.", {}),
    ("pay_payee", "payments_db", "create_payee", "high", "approver", "Register new payees.", {}),
    ("pay_approve", "payments_db", "approve_payment", "high", "approver", "Approve outgoing payments.", {}),
    (
        "pay_admin",
        "payments_db",
        "db_superuser",
        "critical",
        "owner",
        "Schema changes and incident repair.",
        {"break_glass_eligible": True, "ticket_required": True, "allowed_identity_kinds": ["human"]},
    ),
    ("k8s_view", "k8s", "view", "low", "owner", "Read cluster state.", {"auto_approve_machines": True}),
    ("k8s_edit", "k8s", "edit", "medium", "owner", "Change workloads in a namespace.", {}),
    (
        "k8s_admin",
        "k8s",
        "cluster-admin",
        "critical",
        "owner",
        "Administer production clusters.",
        {"break_glass_eligible": True},
    ),
    ("gh_read", "github", "read", "low", "admin", "Read source code.", {"auto_approve_machines": True}),
    ("gh_write", "github", "write", "medium", "admin", "Push branches and open pull requests.", {}),
    ("gh_admin", "github", "org-admin", "critical", "admin", "Administer the GitHub organisation.", {}),
    ("gh_deploy_key", "github", "deploy-key", "high", "admin", "Deploy from CI.", {}),
    ("sf_analyst", "snowflake", "ANALYST", "medium", "data_lead", "Query the analytics warehouse.", {}),
    ("sf_pii", "snowflake", "PII_READER", "high", "data_lead", "Read customer personal data.", {}),
    ("sf_loader", "snowflake", "LOADER", "medium", "data_lead", "Load data from pipelines.", {}),
    ("sf_admin", "snowflake", "ACCOUNTADMIN", "critical", "leaver", "Administer the Snowflake account.", {}),
    ("crm_user", "salesforce", "Sales User", "low", "sales_lead", "Work on accounts and opportunities.", {}),
    ("crm_export", "salesforce", "Data Export", "high", "sales_lead", "Export CRM data in bulk.", {}),
    ("crm_admin", "salesforce", "System Administrator", "critical", "sales_lead", "Administer Salesforce.", {}),
    ("vault_read", "vault", "app-secrets-read", "medium", "ciso", "Read application secrets.", {}),
    (
        "vault_admin",
        "vault",
        "root-policy",
        "critical",
        "ciso",
        "Administer the secrets manager.",
        {"break_glass_eligible": True, "allowed_identity_kinds": ["human"]},
    ),
    ("dd_user", "datadog", "Standard", "low", "owner", "Look at dashboards and logs.", {"auto_approve_machines": True}),
    ("dd_admin", "datadog", "Admin", "medium", "owner", "Manage monitors and integrations.", {}),
    ("jira_user", "jira", "jira-software-users", "low", "support_lead", "Work on tickets.", {}),
    ("ml_train", "ml_platform", "trainer", "medium", "ml_lead", "Run training jobs.", {}),
    ("ml_deploy", "ml_platform", "model-deployer", "high", "ml_lead", "Deploy models to inference.", {}),
]

SOD_RULES = [
    (
        "Payee creation vs payment approval",
        ["pay_payee", "pay_approve"],
        "critical",
        SodAction.BLOCK,
        "Whoever registers a payee must not approve payments to it.",
    ),
    (
        "Deploy vs approve production change",
        ["aws_deploy", "gh_admin"],
        "high",
        SodAction.EXTRA_STAGE,
        "Administering the repositories and deploying to production together bypasses review.",
    ),
    (
        "PII export",
        ["sf_pii", "crm_export"],
        "high",
        SodAction.EXTRA_STAGE,
        "Reading personal data and exporting CRM data together allows bulk exfiltration.",
    ),
]

# Share of generated (non-named) identities by kind.
KIND_SHARES = [
    (IdentityKind.HUMAN, 0.45),
    (IdentityKind.SERVICE_ACCOUNT, 0.20),
    (IdentityKind.API_KEY, 0.12),
    (IdentityKind.WORKLOAD, 0.13),
    (IdentityKind.AI_AGENT, 0.10),
]
MACHINE_PREFIX = {
    IdentityKind.SERVICE_ACCOUNT: "svc",
    IdentityKind.API_KEY: "key",
    IdentityKind.WORKLOAD: "wl",
    IdentityKind.AI_AGENT: "agent",
}
MACHINE_PURPOSE = ["billing", "etl", "deploy", "backup", "reporting", "sync", "alerts", "search", "ingest", "triage"]


def _stages(tier: str) -> list[dict[str, Any]]:
    """Approval path by risk: critical needs the entitlement owner then the system owner."""
    if tier == RiskTier.CRITICAL:
        return [
            {"approver": ApproverSource.ENTITLEMENT_OWNER, "quorum": 1},
            {"approver": ApproverSource.SYSTEM_OWNER, "quorum": 1},
        ]
    if tier == RiskTier.HIGH:
        return [
            {"approver": ApproverSource.BENEFICIARY_OWNER, "quorum": 1},
            {"approver": ApproverSource.ENTITLEMENT_OWNER, "quorum": 1},
        ]
    return [{"approver": ApproverSource.ENTITLEMENT_OWNER, "quorum": 1}]


def _batched(items: list, size: int = BATCH_SIZE) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _bulk(model, objs: list, *, history: bool = True) -> list:
    """Insert batch by batch, with history rows unless told not to (primary keys come back on PostgreSQL/SQLite)."""
    for chunk in _batched(objs):
        if history:
            bulk_create_with_history(chunk, model, batch_size=BATCH_SIZE, default_change_reason="seed_demo")
        else:
            model.objects.bulk_create(chunk, batch_size=BATCH_SIZE)
    return objs


@dataclass
class _Org:
    """What the builder has made so far, for later steps to refer to."""

    now: datetime
    rng: random.Random
    history: bool
    people: dict[str, Identity]
    systems: dict[str, System]
    entitlements: dict[str, Entitlement]


def demo_organisation_exists() -> bool:
    return System.objects.filter(external_id=MARKER).exists()


@transaction.atomic
def demo_organisation_build(
    *, identities: int = 60, seed: int = 1, history: bool | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Build the organisation once; if it exists already, change nothing and say so.

    `identities` counts everyone (at least the named people and machines are made); `history`
    defaults to writing history rows up to HISTORY_UP_TO identities.
    """
    if demo_organisation_exists():
        return {"skipped": True}
    now = now or timezone.now()
    history = identities <= HISTORY_UP_TO if history is None else history
    org = _Org(
        now=now, rng=random.Random(seed), history=history, people=_named_people(now), systems={}, entitlements={}
    )
    _catalogue(org)
    generated_humans, machines = _generated_identities(org, max(identities - len(PEOPLE) - NAMED_MACHINES, 0))
    named_machines = _named_machines(org)
    grants = _grants(org, generated_humans, machines + named_machines)
    if connection.vendor == "postgresql":
        # Fresh statistics after a bulk load, so the first hygiene scan gets sensible plans.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE governance_identity, governance_grant, governance_entitlement")
    counts = {
        "identities": Identity.objects.count(),
        "systems": len(org.systems),
        "entitlements": len(org.entitlements),
        "sod_rules": len(SOD_RULES),
        "grants": grants,
    }
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.IMPORT_APPLIED,
        target=org.systems["aws"],
        data={"source": "seed_demo", "seed": seed, **counts},
    )
    return {"skipped": False, **counts, "history": history}


#
# People, systems and the catalogue
#
def _named_people(now: datetime) -> dict[str, Identity]:
    User = get_user_model()
    users = {u.username: u for u in User.objects.filter(username__in=[p[4] for p in PEOPLE if p[4]])}
    # A login may already be linked (an earlier partial run, or an admin did it): never link twice.
    linked = set(Identity.objects.filter(user__in=users.values()).values_list("user_id", flat=True))
    people: dict[str, Identity] = {}
    for key, name, team, manager, login in PEOPLE:
        user = users.get(login) if login else None
        person = Identity(
            external_id=f"demo:person:{key}",
            name=name,
            kind=IdentityKind.HUMAN,
            team=team,
            email=f"{name.lower().replace(' ', '.')}@example.org",
            manager=people.get(manager) if manager else None,
            user=user if user is not None and user.pk not in linked else None,
            last_used_at=now - timedelta(hours=3),
            status=IdentityStatus.OFFBOARDED if key == "leaver" else IdentityStatus.ACTIVE,
        )
        _bulk(Identity, [person])  # one by one: each manages the next ones
        people[key] = person
    return people


def _catalogue(org: _Org) -> None:
    systems = [
        System(
            external_id=MARKER if i == 0 else f"demo:system:{key}",
            name=name,
            owner=org.people[owner],
            criticality=criticality,
            description=description,
        )
        for i, (key, name, owner, criticality, description) in enumerate(SYSTEMS)
    ]
    _bulk(System, systems)
    org.systems = {key: system for (key, *_), system in zip(SYSTEMS, systems, strict=True)}
    entitlements = [
        Entitlement(
            external_id=f"demo:entitlement:{key}",
            system=org.systems[system],
            name=name,
            risk_tier=tier,
            owner=org.people[owner],
            business_purpose=purpose,
            approval_stages=_stages(tier),
            justification_required=tier != RiskTier.LOW,
            **extra,
        )
        for key, system, name, tier, owner, purpose, extra in ENTITLEMENTS
    ]
    _bulk(Entitlement, entitlements)
    org.entitlements = {row[0]: ent for row, ent in zip(ENTITLEMENTS, entitlements, strict=True)}
    for name, keys, severity, action, description in SOD_RULES:
        rule = SodRule.objects.create(name=name, severity=severity, action=action, description=description)
        rule.entitlements.set([org.entitlements[k] for k in keys])


#
# Generated identities
#
def _kind_counts(total: int) -> dict[str, int]:
    counts = {kind: int(total * share) for kind, share in KIND_SHARES}
    counts[IdentityKind.HUMAN] += total - sum(counts.values())
    return counts


def _generated_identities(org: _Org, total: int) -> tuple[list[Identity], list[Identity]]:
    rng, now = org.rng, org.now
    counts = _kind_counts(total)
    leads = {team: org.people[key] for team, key in TEAM_LEAD.items()}

    # People, batch by batch: each batch's managers come from the leads and earlier batches.
    humans: list[Identity] = []
    managers_by_team: dict[str, list[Identity]] = {team: [lead] for team, lead in leads.items()}
    for chunk_start in range(0, counts[IdentityKind.HUMAN], BATCH_SIZE):
        batch = []
        for i in range(chunk_start, min(chunk_start + BATCH_SIZE, counts[IdentityKind.HUMAN])):
            team = TEAMS[i % len(TEAMS)]
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            roll = rng.random()
            status = (
                IdentityStatus.OFFBOARDED
                if roll < 0.03
                else IdentityStatus.SUSPENDED
                if roll < 0.04
                else IdentityStatus.ACTIVE
            )
            # Most people signed in recently; a few not for months (stale).
            used = now - (
                timedelta(days=rng.randint(100, 400)) if rng.random() < 0.04 else timedelta(hours=rng.randint(1, 720))
            )
            batch.append(
                Identity(
                    external_id=f"demo:human:{i}",
                    name=f"{first} {last}",
                    kind=IdentityKind.HUMAN,
                    team=team,
                    email=f"{first.lower()}.{last.lower()}.{i}@example.org",
                    manager=rng.choice(managers_by_team[team][-50:]),
                    status=status,
                    last_used_at=used,
                )
            )
        _bulk(Identity, batch, history=org.history)
        humans.extend(batch)
        for person in batch:
            if person.status == IdentityStatus.ACTIVE and rng.random() < 0.1:
                managers_by_team[person.team].append(person)

    # The requester and auditor logins keep a small, predictable world: only their named machines.
    pool = [person for key, person in org.people.items() if key not in ("requester", "auditor")] + humans
    active_people = [p for p in pool if p.status == IdentityStatus.ACTIVE]
    gone_people = [p for p in pool if p.status != IdentityStatus.ACTIVE]

    machines: list[Identity] = []
    serial = 0
    for kind in (IdentityKind.SERVICE_ACCOUNT, IdentityKind.API_KEY, IdentityKind.WORKLOAD, IdentityKind.AI_AGENT):
        for _ in range(counts[kind]):
            serial += 1
            # A few owners have left: the identity is orphaned unless a backup owner steps in.
            owner = rng.choice(gone_people) if rng.random() < 0.04 else rng.choice(active_people)
            backup = rng.choice(active_people) if rng.random() < 0.4 else None
            machines.append(_machine(org, kind, serial, owner, backup if backup is not owner else None))
    for chunk in _batched(machines):
        _bulk(Identity, chunk, history=org.history)
    return humans, machines


def _machine(org: _Org, kind: str, serial: int, owner: Identity, backup: Identity | None, **overrides) -> Identity:
    rng, now = org.rng, org.now
    team = owner.team or rng.choice(TEAMS)
    purpose = rng.choice(MACHINE_PURPOSE)
    name = f"{MACHINE_PREFIX[kind]}-{team.lower().replace(' ', '-')}-{purpose}-{serial}"
    if kind == IdentityKind.WORKLOAD:
        credential, location, period = CredentialType.WORKLOAD_IDENTITY, SecretLocation.NONE, None
    elif kind == IdentityKind.AI_AGENT:
        credential, location, period = CredentialType.SHORT_LIVED_TOKEN, SecretLocation.SECRETS_MANAGER, 30
    else:
        credential, location, period = CredentialType.STATIC_SECRET, SecretLocation.SECRETS_MANAGER, 90
        roll = rng.random()
        if roll < 0.03:
            location = SecretLocation.EMBEDDED_IN_CODE
        elif roll < 0.07:
            location = SecretLocation.CI_CD
        elif roll < 0.09:
            location = SecretLocation.UNKNOWN
    rotated = None
    if period is not None:
        # Most rotate on time; about one in ten is overdue, a few were never rotated.
        roll = rng.random()
        rotated = (
            None
            if roll < 0.02
            else now - timedelta(days=rng.randint(period + 1, period * 3) if roll < 0.1 else rng.randint(0, period - 1))
        )
    stale = rng.random() < 0.06
    fields = {
        "external_id": f"demo:{kind}:{serial}",
        "name": name,
        "kind": kind,
        "team": team,
        "description": f"{IdentityKind(kind).label} for {purpose} ({team}).",
        "owner": owner,
        "backup_owner": backup,
        "credential_type": credential,
        "secret_location": location,
        "rotation_period_days": period,
        "last_rotated_at": rotated,
        "last_used_at": now
        - (timedelta(days=rng.randint(95, 500)) if stale else timedelta(minutes=rng.randint(1, 10_000))),
        "may_self_request": kind == IdentityKind.AI_AGENT and rng.random() < 0.5,
    }
    fields.update(overrides)
    return Identity(**fields)


def _named_machines(org: _Org) -> list[Identity]:
    """The demo logins' own machines, with the cases a demo should show on first sight."""
    p, now = org.people, org.now
    specs = [
        (IdentityKind.SERVICE_ACCOUNT, "owner", "admin", {"name": "svc-platform-deployer"}),
        (
            IdentityKind.API_KEY,
            "owner",
            None,
            {"name": "key-datadog-ingest", "secret_location": SecretLocation.EMBEDDED_IN_CODE},
        ),
        (IdentityKind.WORKLOAD, "owner", "cto", {"name": "wl-k8s-payments-api"}),
        (IdentityKind.AI_AGENT, "owner", "admin", {"name": "agent-incident-triage", "may_self_request": True}),
        (
            IdentityKind.SERVICE_ACCOUNT,
            "owner",
            None,
            {
                "name": "svc-nightly-backup",
                "last_rotated_at": now - timedelta(days=400),
                "last_used_at": now - timedelta(days=200),
            },
        ),
        (IdentityKind.SERVICE_ACCOUNT, "requester", None, {"name": "svc-riya-report-bot"}),
        (IdentityKind.SERVICE_ACCOUNT, "leaver", "owner", {"name": "svc-data-export"}),
        (
            IdentityKind.API_KEY,
            "leaver",
            None,
            {"name": "key-snowflake-legacy", "secret_location": SecretLocation.CI_CD},
        ),
    ]
    # Named machines are well kept unless their spec says otherwise.
    kept = {"last_rotated_at": now - timedelta(days=10), "last_used_at": now - timedelta(hours=1)}
    assert len(specs) == NAMED_MACHINES
    machines = [
        _machine(
            org,
            kind,
            900_000 + i,
            p[owner],
            p[backup] if backup else None,
            external_id=f"demo:named:{i}",
            **{**kept, **extra},
        )
        for i, (kind, owner, backup, extra) in enumerate(specs)
    ]
    _bulk(Identity, machines)
    return machines


#
# Grants
#
def _grant(identity: Identity, entitlement: Entitlement, now: datetime, rng: random.Random, **kw) -> Grant:
    granted = kw.pop("granted_at", now - timedelta(days=rng.randint(1, 400)))
    # Most grants are in use; some have sat idle for months (excessive privilege).
    idle = rng.random() < 0.05
    used = now - timedelta(days=rng.randint(61, 300)) if idle else now - timedelta(hours=rng.randint(1, 400))
    fields = {
        "identity": identity,
        "entitlement": entitlement,
        "kind": GrantKind.STANDING,
        "status": GrantStatus.ACTIVE,
        "granted_at": granted,
        "last_used_at": max(used, granted),
        "reason": "Seeded demo access",
    }
    fields.update(kw)
    return Grant(**fields)


def _grants(org: _Org, humans: list[Identity], machines: list[Identity]) -> int:
    rng, now, ents, p = org.rng, org.now, org.entitlements, org.people

    by_tier: dict[str, list[Entitlement]] = {}
    for ent in ents.values():
        by_tier.setdefault(ent.risk_tier, []).append(ent)
    low_medium = by_tier[RiskTier.LOW] + by_tier[RiskTier.MEDIUM]
    grants: list[Grant] = []
    held: set[tuple[int, int]] = set()

    def give(identity: Identity, ent: Entitlement, **kw) -> Grant | None:
        if (identity.pk, ent.pk) in held:
            return None
        held.add((identity.pk, ent.pk))
        grant = _grant(identity, ent, now, rng, **kw)
        grants.append(grant)
        return grant

    # Everyone active holds a few low or medium entitlements; one in fifty a standing high one.
    for person in humans:
        if person.status != IdentityStatus.ACTIVE:
            continue
        for ent in rng.sample(low_medium, rng.randint(1, 3)):
            if IdentityKind.HUMAN in ent.allowed_identity_kinds:
                give(person, ent)
        if rng.random() < 0.02:
            give(person, rng.choice(by_tier[RiskTier.HIGH]))

    # Machines hold what their kind may hold; a few hold more (excessive privilege).
    allowed, high_ok, too_risky = {}, {}, {}
    for kind in IdentityKind.non_human():
        max_rank = RiskTier.rank(settings.MAX_RISK_TIER_BY_KIND.get(kind, RiskTier.MEDIUM))
        open_to_kind = [e for e in ents.values() if kind in e.allowed_identity_kinds]
        everyday = min(max_rank, RiskTier.rank(RiskTier.MEDIUM))
        allowed[kind] = [e for e in open_to_kind if RiskTier.rank(e.risk_tier) <= everyday]
        # High-risk access a kind may hold (standing: a finding), and access above what it may hold.
        high_ok[kind] = [e for e in open_to_kind if everyday < RiskTier.rank(e.risk_tier) <= max_rank]
        too_risky[kind] = [e for e in open_to_kind if RiskTier.rank(e.risk_tier) > max_rank]
    for machine in machines:
        for ent in rng.sample(allowed[machine.kind], min(len(allowed[machine.kind]), rng.randint(1, 2))):
            give(machine, ent)
        roll = rng.random()
        if roll < 0.03 and high_ok[machine.kind]:
            give(machine, rng.choice(high_ok[machine.kind]))
        elif roll < 0.05 and too_risky[machine.kind]:
            give(machine, rng.choice(too_risky[machine.kind]))

    # The demo logins: what each role sees on first sight.
    give(p["requester"], ents["pay_read"])
    give(p["requester"], ents["jira_user"])
    give(p["requester"], ents["pay_payee"], granted_at=now - timedelta(days=30))
    give(p["approver"], ents["pay_payee"])
    give(p["approver"], ents["pay_approve"])  # SoD conflict held
    give(p["owner"], ents["aws_admin"])  # standing critical access
    give(p["owner"], ents["k8s_admin"])
    give(p["owner"], ents["dd_admin"])
    give(p["admin"], ents["gh_admin"])
    give(p["admin"], ents["aws_deploy"])  # SoD conflict held
    give(p["data_lead"], ents["sf_pii"])
    give(p["auditor"], ents["jira_user"])
    for key in ("svc-platform-deployer", "wl-k8s-payments-api"):
        machine = next(m for m in machines if m.name == key)
        give(machine, ents["k8s_edit"])
        give(machine, ents["gh_deploy_key"])
    give(next(m for m in machines if m.name == "svc-riya-report-bot"), ents["sf_analyst"])
    give(next(m for m in machines if m.name == "agent-incident-triage"), ents["dd_user"])

    # Just-in-time grants running now, and one past its expiry for the sweep to collect.
    for person, key, hours in (
        (p["owner"], "pay_admin", 1),
        (p["requester"], "aws_read", 4),
        (p["admin"], "vault_admin", 2),
    ):
        give(
            person,
            ents[key],
            kind=GrantKind.JIT,
            granted_at=now - timedelta(minutes=20),
            expires_at=now + timedelta(hours=hours),
        )
    give(
        p["approver"],
        ents["k8s_edit"],
        kind=GrantKind.JIT,
        granted_at=now - timedelta(hours=5),
        expires_at=now - timedelta(minutes=5),
    )
    _bulk(Grant, grants, history=org.history)

    # A JIT grant renewed again and again until it is standing access in all but name.
    chain: list[Grant] = []
    previous = None
    for step in range(settings.JIT_RENEWAL_STEP_UP_AFTER + 1):
        start = now - timedelta(days=8 * (settings.JIT_RENEWAL_STEP_UP_AFTER - step) + 1)
        last = step == settings.JIT_RENEWAL_STEP_UP_AFTER
        grant = _grant(
            p["requester"],
            ents["sf_analyst"],
            now,
            rng,
            kind=GrantKind.JIT,
            granted_at=start,
            expires_at=now + timedelta(days=6) if last else start + timedelta(days=7),
            status=GrantStatus.ACTIVE if last else GrantStatus.EXPIRED,
            renewal_of=previous,
            reason="Quarterly reporting (renewed)",
        )
        _bulk(Grant, [grant])
        chain.append(grant)
        previous = grant
    return len(grants) + len(chain)
