"""OpenAPI examples for the request API, as a machine calls it: an AI agent asking for access for a task.

Kept apart from the views so that they stay thin. Each example holds only the fields its serializer
has, so a field added or dropped there never leaves the documentation showing one that is not sent.
"""

from drf_spectacular.utils import OpenApiExample

from .serializers import AccessRequestSerializer, SubmitSerializer

AGENT_SUBMIT = {
    "beneficiary": 42,
    "entitlement": 7,
    "duration_seconds": 1800,
    "intent": "Restart the payments ledger after the nightly reconciliation failed.",
    "intent_task": "INC-7781",
    "intent_action": "restart",
    "intent_resource": "payments-ledger",
    "delegation_chain": [15, 16],
}
AGENT_SUBMITTED = {
    "id": 901,
    "status": "pending",
    "requester": None,
    "requester_identity": 42,
    "beneficiary": 42,
    "beneficiary_name": "triage-agent",
    "entitlement": 7,
    "entitlement_name": "ledger-operator",
    "duration_seconds": 1800,
    "justification": "",
    "ticket": "",
    **{name: value for name, value in AGENT_SUBMIT.items() if name.startswith("intent")},
    # As verified: each hop with both ends, from the person who started the work to this agent.
    "delegation_chain": [
        {
            "delegation": 15,
            "from": {"id": 3, "name": "Dana Ops", "kind": "human"},
            "to": {"id": 40, "name": "ops-orchestrator", "kind": "ai_agent"},
            "expires_at": "2026-12-03T17:00:00+00:00",
        },
        {
            "delegation": 16,
            "from": {"id": 40, "name": "ops-orchestrator", "kind": "ai_agent"},
            "to": {"id": 42, "name": "triage-agent", "kind": "ai_agent"},
            "expires_at": "2026-12-03T12:00:00+00:00",
        },
    ],
    "start_at": None,
    "activation_deadline": None,
    "renewal_of": None,
    "grant": None,
    "policy": {
        "allowed": True,
        "reasons": [],
        "stages": [{"approver": "entitlement_owner", "quorum": 1}],
        "duration_seconds": 1800,
        "max_duration_seconds": 3600,
        "auto_approve": False,
    },
    "decided_at": None,
    "decision_note": "",
    "created_at": "2026-12-03T09:15:00Z",
    "stages": [
        {
            "position": 1,
            "approver_source": "entitlement_owner",
            "group": "",
            "quorum": 1,
            "reason": "",
            "status": "pending",
            "decided_at": None,
            "approvals": [],
        }
    ],
}
TOO_LONG = "The maximum duration for this entitlement is 1 hour."
NO_TICKET = "A ticket reference is required for this entitlement."


def _only(fields, value: dict) -> dict:
    return {name: item for name, item in value.items() if name in fields}


SUBMIT_EXAMPLES = [
    OpenApiExample(
        "Agent asks for a task",
        summary="An AI agent, signed in by its token, asks for access for a task it was given",
        description="`Authorization: Bearer gp_…` of the agent's identity, with the scope `requests:write`. "
        "The intent says what it will do, to what, for which task; `delegation_chain` names the delegations "
        "it acts under by id (GET /api/v1/delegations/), from the person who started the work to the one "
        "naming this agent.",
        value=_only(SubmitSerializer().fields, AGENT_SUBMIT),
        request_only=True,
    ),
    OpenApiExample(
        "Submitted",
        summary="Routed to its approvers (or approved at once, when the entitlement auto-approves machines)",
        value=_only(AccessRequestSerializer.Meta.fields, AGENT_SUBMITTED),
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "Refused by the policy",
        summary="Every reason the policy gave, and the fields they are about: fix them all and send again",
        value={
            "detail": TOO_LONG,
            "code": "policy_refused",
            "reasons": [TOO_LONG, NO_TICKET],
            "errors": {"duration_seconds": [TOO_LONG], "ticket": [NO_TICKET]},
        },
        response_only=True,
        status_codes=["400"],
    ),
    OpenApiExample(
        "Token without the scope",
        value={"detail": "The token lacks the scope requests:write.", "code": "insufficient_scope"},
        response_only=True,
        status_codes=["403"],
    ),
]
