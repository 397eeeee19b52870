"""Just-in-time database access, end to end on the real local PostgreSQL: an admin configures a
PostgreSQL system in the browser and tests its connection; a requester asks on the request page and
the entitlement's owner approves in the approval queue; the login role can query; the grant expires; it can no longer query; the grant's trail shows what the
target did both times. Ref: #15."""

from datetime import timedelta

import pytest
import time_machine
from playwright.sync_api import expect

from audit.outbox import outbox_dispatch
from governance.choices import GrantStatus
from governance.models import Grant, System
from governance.services.catalogue import entitlement_create
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.expiry import grants_expire_due
from tests.factories.governance import PersonFactory
from tests.governance.test_connector_postgresql import HOST, PORT, _drop_target, _make_target

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def sign_in_as(page, login, username):
    page.context.clear_cookies()
    login(username)
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


@pytest.fixture
def target():
    made = _make_target(PORT)
    yield made
    _drop_target(made)


def test_an_approved_request_gives_database_access_that_ends_by_itself(page, login, target):
    PersonFactory(name="Ada Admin", user__username="ada", user__roles=["admin"])
    PersonFactory(name="Sol Owner", user__username="sol", user__roles=["owner"])
    login_role = f"{target.prefix}_login_rae"
    target.run(f"CREATE ROLE \"{login_role}\" LOGIN PASSWORD 'rae-pw'")
    rae = PersonFactory(name="Rae Analyst", user__username="rae", user__roles=["requester"], external_id=login_role)

    # an admin configures the PostgreSQL system in the browser
    sign_in_as(page, login, "ada")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Systems").click()
    page.get_by_role("button", name="New system").click()
    page.get_by_label("Name").fill("Ledger DB")
    page.locator("#id_owner").fill("sol")  # a person picker: typed by login
    page.get_by_label("Connector").select_option("postgresql")
    page.locator("#id_settings-host").fill(HOST)
    page.locator("#id_settings-port").fill(str(PORT))
    page.locator("#id_settings-dbname").fill(target.dbname)
    page.locator("#id_settings-user").fill("postgres")
    page.locator("#id_settings-password").fill("unused-with-trust-auth")
    page.locator("#id_settings-sslmode").select_option("disable")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#messages")).to_contain_text("Ledger DB added")
    assert "unused-with-trust-auth" not in page.content()
    system = System.objects.get(name="Ledger DB")
    owner = PersonFactory(name="Eli Entitlement-Owner", user__username="eli", user__roles=["owner"])
    entitlement = entitlement_create(
        actor=system.owner.user, system=system, name="Ledger read", owner=owner, target_name=target.reader
    )

    # and tests the connection: the server answers and the governed role can be granted
    page.reload()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-test")).to_contain_text("The connection to Ledger DB works")

    # a requester asks for one hour on the request page, with the policy preview before submitting
    sign_in_as(page, login, "rae")
    page.goto(f"/access/request/{entitlement.pk}/")
    preview = page.locator("#policy-preview")
    expect(preview).to_contain_text("Eli Entitlement-Owner")
    page.get_by_label("1 hour", exact=True).check()
    expect(preview).to_contain_text("1 hour")
    page.get_by_label("Justification").fill("Month-end reconciliation")
    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_role("status").filter(has_text="submitted")).to_be_visible()
    request = AccessRequest.objects.get(beneficiary=rae, entitlement=entitlement)
    assert request.duration == timedelta(hours=1)

    # the entitlement's owner approves it in the approval queue; the connector puts it in place
    sign_in_as(page, login, "eli")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    card = page.locator(f"#req-{request.pk}")
    expect(card).to_contain_text("Rae Analyst")
    expect(card).to_contain_text("Month-end reconciliation")
    card.get_by_label("Comment").fill("ok for month-end")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(f"#req-{request.pk}.outcome")).to_contain_text("Approved")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    outbox_dispatch()
    grant = Grant.objects.get(identity=rae, entitlement=entitlement)
    assert grant.status == GrantStatus.ACTIVE
    assert target.read_as(login_role, "rae-pw") == "read"

    # the grant expires: the sweep asks the target to remove it, and the login can no longer query
    with time_machine.travel(grant.expires_at + timedelta(minutes=1)):
        assert grants_expire_due() == 1
        outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.EXPIRED
    assert target.read_as(login_role, "rae-pw") == "permission denied"

    # the grant's trail shows both, with what the target was seen to do
    page.goto(f"/inventory/grants/{grant.pk}/")
    trail = page.locator("main")
    expect(trail).to_contain_text(f'GRANT "{target.reader}" TO "{login_role}"')
    expect(trail).to_contain_text(f'REVOKE "{target.reader}" FROM "{login_role}"')
