"""The API answers as its OpenAPI schema says: schemathesis calls every operation, signed in.

The schema is the one the portal serves (/api/v1/schema/). Each operation gets generated calls, valid
and invalid, once with whatever ids the generator picks and once (operations on one object) with the id
of an object that exists, so that the answers of a found object (200, 403, 409) are reached too. Every
call goes through the WSGI application in process, inside the test's transaction (one savepoint per
call, rolled back): no server error, and the status, content type and body are the documented ones.
"""

import json
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from governance.choices import FindingKind, GrantKind
from governance.models import Finding
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 10
CSRF_TOKEN = "schemathesisschemathesisschemat1"  # a 32-character secret, sent as cookie and header


@pytest.fixture
def wsgi_app():
    """The portal's WSGI application, keeping the test's connection (and transaction) across calls,
    as Django's test client does."""
    from django.core.wsgi import get_wsgi_application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def admin_person():
    """An admin who also requests, approves and owns: every operation is open to them."""
    return PersonFactory(name="Ada Admin", user__roles=["admin", "requester", "approver", "owner"])


@pytest.fixture
def existing(admin_person) -> dict[str, int]:
    """One object of each kind the API names by id, by the first segment of its path."""
    from jit.services.requests import access_request_submit

    requester = PersonFactory(name="Rae Requester")
    entitlement = EntitlementFactory(owner=admin_person, system=SystemFactory(owner=admin_person))
    bot = MachineFactory(owner=admin_person)
    grant = GrantFactory(identity=bot, entitlement=EntitlementFactory(owner=admin_person), kind=GrantKind.JIT)
    request = access_request_submit(
        actor=requester.user,
        beneficiary_id=requester.pk,
        entitlement_id=entitlement.pk,
        duration=None,
        justification="Schema fuzzing",
    )
    finding = Finding.objects.create(
        key=f"fuzz:{bot.pk}",
        kind=FindingKind.values[0],
        identity=bot,
        owner_to_act=admin_person,
        first_seen_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    from tests.factories.break_glass import EligibilityFactory, activate

    activation = activate(EligibilityFactory())
    from jit.services.delegations import delegation_create

    delegation = delegation_create(
        actor=admin_person.user,
        delegator_id=admin_person.pk,
        delegate_id=bot.pk,
        purpose="Schema fuzzing",
        expires_at=timezone.now() + timedelta(days=1),
    )
    return {
        "break-glass": activation.pk,
        "delegations": delegation.pk,
        "identities": bot.pk,
        "systems": entitlement.system_id,
        "entitlements": entitlement.pk,
        "catalogue": entitlement.pk,
        "grants": grant.pk,
        "requests": request.pk,
        "findings": finding.pk,
    }


def _session_of(user) -> dict:
    """Cookies and headers of a signed-in session that passes DRF's CSRF check on unsafe methods."""
    client = Client()
    client.force_login(user)
    return {
        "cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF_TOKEN},
        "headers": {"X-CSRFToken": CSRF_TOKEN},
        "client": client,
    }


@pytest.fixture
def signed_in(admin_person) -> dict:
    return _session_of(admin_person.user)


@pytest.fixture
def api_schema(signed_in):
    response = signed_in["client"].get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return schemathesis.openapi.from_dict(json.loads(response.content))


def test_the_served_schema_documents_the_error_answers(api_schema):
    operations = api_schema.raw_schema["paths"]
    for path, methods in operations.items():
        for method, operation in methods.items():
            documented = set(operation["responses"])
            assert {"403", "429"} <= documented, f"{method.upper()} {path}"
            if "{id}" in path:
                assert "404" in documented, f"{method.upper()} {path}"
            if method in {"post", "put", "patch"}:
                assert {"400", "409"} <= documented, f"{method.upper()} {path}"


def test_handing_an_identity_over_answers_as_documented(api_schema, wsgi_app):
    """The one answer an admin never gets: the edited object is no longer the caller's to see."""
    alice, bob = PersonFactory(), PersonFactory()
    bot = MachineFactory(owner=alice)
    session = _session_of(alice.user)
    operation = api_schema["/api/v1/identities/{id}/"]["PATCH"]
    case = operation.Case(path_parameters={"id": bot.pk}, body={"owner": bob.pk}, media_type="application/json")

    response = case.call(app=wsgi_app, cookies=session["cookies"], headers=session["headers"])

    assert response.status_code == 200 and set(response.json()) == {"id", "detail"}
    case.validate_response(response, checks=CHECKS, headers=session["headers"])


# The first segment of every operation's path: one test each, so that workers share them out.
RESOURCES = [
    "identities",
    "systems",
    "entitlements",
    "grants",
    "findings",
    "requests",
    "catalogue",
    "break-glass",
    "delegations",
    "connectors",
    "token",
    "me",
    "schema",
]
# Generating the schema is slow, and its answer is checked whole above.
FEWER_EXAMPLES = {"schema": 3}


def _resource(operation) -> str:
    return operation.path.removeprefix("/api/v1/").split("/")[0]


def test_every_operation_is_fuzzed(api_schema):
    assert {_resource(result.ok()) for result in api_schema.get_all_operations()} == set(RESOURCES)


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_operation_answers_as_documented(resource, api_schema, wsgi_app, signed_in, existing):
    _fuzz_resource(resource, api_schema, wsgi_app, signed_in, existing, FEWER_EXAMPLES.get(resource))


# What a machine identity calls with its token: the resources of RESOURCES it uses, in their order.
MACHINE_USES = {"requests", "catalogue", "grants", "break-glass", "token", "delegations", "me"}
MACHINE_RESOURCES = [resource for resource in RESOURCES if resource in MACHINE_USES]
MACHINE_MAX_EXAMPLES = 6  # the person's run above covers the same operations more deeply


@pytest.fixture
def machine(admin_person) -> dict:
    """An AI agent signed in by a token with every machine scope, and the id of one object of each kind
    it may see (its own request, grant and break-glass activation, a delegation to it)."""
    from audit.services import Actor
    from governance.services.credentials import api_token_create
    from governance.token_scopes import MACHINE_SCOPES
    from jit.services.break_glass import break_glass_activate
    from jit.services.delegations import delegation_create
    from jit.services.requests import access_request_submit
    from tests.factories.break_glass import EligibilityFactory

    agent = MachineFactory(name="fuzz-agent", kind="ai_agent", owner=admin_person, may_self_request=True)
    issued = api_token_create(actor=admin_person.user, identity_id=agent.pk, name="fuzz", scopes=sorted(MACHINE_SCOPES))
    # Owned by someone other than the agent's owner, who may not approve for their own machine.
    requested = EntitlementFactory(owner=PersonFactory(user__roles=["approver"]))
    request = access_request_submit(
        actor=Actor(identity=agent),
        beneficiary_id=agent.pk,
        entitlement_id=requested.pk,
        intent="Schema fuzzing as a machine",
    )
    grant = GrantFactory(identity=agent, entitlement=EntitlementFactory(owner=admin_person), kind=GrantKind.JIT)
    activation = break_glass_activate(
        actor=Actor(identity=agent),
        eligibility_id=EligibilityFactory(identity=agent).pk,
        incident_reference="INC-FUZZ",
        reason="Schema fuzzing as a machine",
        step_up_verified_by="api_token",
    )
    delegation = delegation_create(
        actor=admin_person.user,
        delegator_id=admin_person.pk,
        delegate_id=agent.pk,
        purpose="Schema fuzzing as a machine",
        expires_at=timezone.now() + timedelta(days=1),
    )
    return {
        "cookies": {},
        "headers": {"Authorization": f"Bearer {issued.secret}"},
        "existing": {
            "requests": request.pk,
            "catalogue": requested.pk,
            "grants": grant.pk,
            "break-glass": activation.pk,
            "delegations": delegation.pk,
        },
    }


@pytest.mark.parametrize("resource", MACHINE_RESOURCES)
def test_every_operation_a_machine_uses_answers_as_documented_to_its_token(resource, api_schema, wsgi_app, machine):
    _fuzz_resource(resource, api_schema, wsgi_app, machine, machine["existing"], MACHINE_MAX_EXAMPLES)


def _fuzz_resource(resource, api_schema, wsgi_app, caller, existing, max_examples=None) -> None:
    """Every operation under `resource`, valid and invalid calls, with generated ids and (operations on
    one object) the id of an object that exists."""
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if _resource(operation) != resource:
            continue
        pinned = [{}]
        if "{id}" in operation.path:
            pinned.append({"id": existing[resource]})
        for path_parameters in pinned:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    _fuzz(operation, mode, path_parameters, wsgi_app, caller, max_examples)
                except (Exception, BaseExceptionGroup) as exc:  # one report for all, each its smallest case
                    failures.append(f"{operation.label} {mode.value} {path_parameters}:\n{exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz(operation, mode, path_parameters, wsgi_app, signed_in, max_examples=None) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

    @given(case=strategy)
    @settings(
        max_examples=max_examples or MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def call(case):
        with transaction.atomic():
            response = case.call(app=wsgi_app, cookies=signed_in["cookies"], headers=signed_in["headers"])
            transaction.set_rollback(True)
        case.validate_response(response, checks=CHECKS, headers=signed_in["headers"])

    call()
