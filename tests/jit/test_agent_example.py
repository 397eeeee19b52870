"""The agent example (examples/agent.py), run against a live portal over HTTP with only the documented API:
with a token and with a federated JWT, on behalf of another agent, approved automatically for low risk
and by a person for high risk, then released; the audit trail shows the chain and the intent."""

import importlib.util
import json
from pathlib import Path

import pytest

from audit.models import AuditEvent
from governance.models import Grant
from governance.services.credentials import api_token_create
from governance.services.federation import workload_trust_create
from governance.services.grants import grant_confirm_provisioned
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.delegations import delegation_create
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory, with_role
from tests.governance.test_workload_federation import AUDIENCE, ISSUER, KEY, SUBJECT, _jwks, signed

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "agent.py"
AGENT_SCOPES = ["requests:read", "requests:write", "grants:read", "grants:write"]


def _agent_module():
    spec = importlib.util.spec_from_file_location("agent_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def world():
    alice = with_role(PersonFactory(name="Alice Initiator"), "requester")
    approver = with_role(PersonFactory(name="Ada Approver"), "approver")
    orchestrator = MachineFactory(name="orchestrator-7", kind="ai_agent", owner=alice, may_self_request=True)
    worker = MachineFactory(name="worker-3", kind="ai_agent", owner=alice, may_self_request=True)
    system = SystemFactory(name="Warehouse", owner=approver)
    kinds = ["human", "service_account", "workload", "ai_agent"]
    low = EntitlementFactory(
        system=system, name="orders-read", owner=approver, risk_tier="low", auto_approve_machines=True,
        allowed_identity_kinds=kinds,
    )  # fmt: skip
    high = EntitlementFactory(
        system=system, name="orders-admin", owner=approver, risk_tier="high", allowed_identity_kinds=kinds,
        justification_required=False,
    )  # fmt: skip
    first = delegation_create(
        actor=alice.user, delegator_id=alice.pk, delegate_id=orchestrator.pk, may_redelegate=True,
        max_risk_tier="high", purpose="Run the reconciliation",
    )  # fmt: skip
    second = delegation_create(
        actor=alice.user, delegator_id=orchestrator.pk, delegate_id=worker.pk, max_risk_tier="high",
        purpose="The read step",
    )  # fmt: skip
    return {
        "alice": alice, "approver": approver, "orchestrator": orchestrator, "worker": worker, "low": low,
        "high": high, "chain": f"{first.pk},{second.pk}",
    }  # fmt: skip


def run(live_server, capsys, *args) -> tuple[int, str]:
    try:
        code = _agent_module().main(["--portal", live_server.url, *map(str, args)])
    except SystemExit as stopped:  # the script stops early when people or the system must act first
        code = stopped.code
    return code, capsys.readouterr().out


def confirm_the_grant(request_id: int, world) -> Grant:
    grant = AccessRequest.objects.get(pk=request_id).grant
    return grant_confirm_provisioned(grant_id=grant.pk, actor=world["approver"].user, reference="done by hand")


def request_id_in(output: str) -> int:
    return int(output.split("--resume ")[-1].split()[0])


def test_an_agent_with_a_token_is_approved_automatically_for_low_risk_and_releases_the_grant(
    live_server, capsys, world
):
    token = api_token_create(actor=world["alice"].user, identity_id=world["worker"].pk, name="ci", scopes=AGENT_SCOPES)
    intent = ["--task", "T-1", "--action", "read", "--resource", "warehouse/orders", "--why", "Nightly reconciliation"]
    asked = ("--token", token.secret, "--entitlement", "orders-read", "--on-behalf-of", world["chain"], *intent)

    code, out = run(live_server, capsys, *asked, "--no-wait")
    assert code == 3 and "approved automatically" in out and "waits for its system" in out
    assert f"orders-read is entitlement {world['low'].pk} of Warehouse (low risk)" in out
    request = AccessRequest.objects.get(beneficiary=world["worker"])
    confirm_the_grant(request.pk, world)

    code, out = run(live_server, capsys, "--token", token.secret, "--resume", request.pk)
    assert code == 0, out
    assert "released grant" in out
    assert Grant.objects.get(pk=request.grant_id).status in ("revoking", "revoked")

    submitted = AuditEvent.objects.get(action="request.submitted", target_id=str(request.pk))
    assert [hop["to"]["name"] for hop in submitted.data["delegation_chain"]] == ["orchestrator-7", "worker-3"]
    assert "T-1" in json.dumps(submitted.data) and "warehouse/orders" in json.dumps(submitted.data)
    assert AuditEvent.objects.filter(action="request.auto_approved", target_id=str(request.pk)).exists()
    assert AuditEvent.objects.filter(action="grant.released").exists()


def test_a_high_risk_request_goes_to_a_person_and_the_agent_picks_it_up_after(live_server, capsys, world):
    token = api_token_create(actor=world["alice"].user, identity_id=world["worker"].pk, name="ci", scopes=AGENT_SCOPES)
    asked = ("--token", token.secret, "--entitlement", world["high"].pk, "--on-behalf-of", world["chain"])

    code, out = run(live_server, capsys, *asked, "--task", "T-2", "--action", "write", "--no-wait")
    assert code == 3 and "waits for people" in out
    request_id = request_id_in(out)
    access_request_decide(request_id=request_id, approver=world["approver"].user, decision="approve")
    assert AccessRequest.objects.get(pk=request_id).activation_deadline is not None  # high risk: activate it

    code, out = run(live_server, capsys, "--token", token.secret, "--resume", request_id, "--no-wait")
    assert code == 3 and "approved by people" in out and "waits for its system" in out
    confirm_the_grant(request_id, world)
    code, out = run(live_server, capsys, "--token", token.secret, "--resume", request_id)
    assert code == 0, out
    assert "released grant" in out


def test_a_refusal_prints_its_code_and_reason(live_server, capsys, world):
    token = api_token_create(actor=world["alice"].user, identity_id=world["worker"].pk, name="ci", scopes=AGENT_SCOPES)
    code, out = run(live_server, capsys, "--token", token.secret, "--entitlement", world["low"].pk, "--minutes", 100000)
    assert code == 2 and "refused (400" in out and "duration" in out


def test_a_workload_with_a_federated_jwt_needs_no_stored_secret(live_server, capsys, world, tmp_path, settings):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(_jwks(KEY)))
    settings.WORKLOAD_ISSUERS = [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks)}]
    workload = MachineFactory(name="deployer", kind="workload", owner=world["alice"], may_self_request=True)
    workload_trust_create(
        actor=world["alice"].user, identity_id=workload.pk, issuer=ISSUER, subject=SUBJECT, scopes=AGENT_SCOPES
    )
    jwt_file = tmp_path / "token"
    jwt_file.write_text(signed())

    code, out = run(
        live_server, capsys, "--workload-jwt-file", jwt_file, "--entitlement", world["low"].pk, "--task", "T-3",
        "--action", "deploy", "--why", "Roll out release 42", "--no-wait",
    )  # fmt: skip
    assert code == 3 and "exchanged the workload JWT" in out and "I am deployer" in out
    assert "approved automatically" in out
