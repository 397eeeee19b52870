"""The postgresql connector against a real PostgreSQL: a login can read while its grant is in force and
not after revocation or expiry; VALID UNTIL follows its access; failures are permanent or retried
as they should be; holdings and the connection test say what the target holds and what is wrong.

Each module run makes a throwaway database, a table, a `<prefix>_reader` role with SELECT on it, and a
login role per test on the local server (trust authentication), and drops them after, whatever
happens. Password sign-in (a refused admin password, VALID UNTIL stopping a login) needs a server
that checks passwords: a private one is started for those tests (skipped where initdb is missing).
Ref: issue 15.
"""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from glob import glob
from pathlib import Path

import psycopg
import pytest
import time_machine
from django.conf import settings as django_settings
from psycopg import sql

from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch
from governance.choices import GrantKind, GrantStatus
from governance.connectors import Holding, Outcome, RetriableError, connector_for
from governance.services.catalogue import entitlement_create, system_create
from governance.services.connections import system_test_connection
from governance.services.grants import grant_create, grant_renew, grant_revoke
from jit.services.expiry import grants_expire_due
from tests.factories.governance import MachineFactory, PersonFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

HOST, PORT, ADMIN = "127.0.0.1", 5432, "postgres"
TABLE = "ledger"
HOUR = timedelta(hours=1)
MARGIN = timedelta(minutes=5)  # the connector's default validity margin


@dataclass(frozen=True)
class Target:
    """A throwaway database on a PostgreSQL server, and the names of the roles made for it."""

    port: int
    dbname: str
    prefix: str
    admin_password: str = ""

    @property
    def reader(self) -> str:
        return f"{self.prefix}_reader"

    @property
    def writer(self) -> str:
        return f"{self.prefix}_writer"

    def admin(self, dbname: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=ADMIN,
            password=self.admin_password or None,
            dbname=dbname or self.dbname,
            autocommit=True,
        )

    def run(self, statement: sql.Composable | str, params=None) -> list[tuple]:
        with self.admin() as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def read_as(self, login: str, password: str | None = None) -> str:
        """What happens when `login` reads the table: "read", "permission denied" or "sign-in refused"."""
        try:
            with psycopg.connect(
                host=HOST, port=self.port, user=login, password=password, dbname=self.dbname, connect_timeout=5
            ) as conn:
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE)))
        except psycopg.errors.InsufficientPrivilege:
            return "permission denied"
        except psycopg.OperationalError as exc:
            assert "password authentication failed" in str(exc), exc
            return "sign-in refused"
        return "read"

    def valid_until(self, login: str) -> datetime | str | None:
        """The login's VALID UNTIL: a time, "infinity", or None when it has none."""
        query = "SELECT rolvaliduntil::text, CASE WHEN isfinite(rolvaliduntil) THEN rolvaliduntil END FROM pg_roles"
        text, moment = self.run(query + " WHERE rolname = %s", [login])[0]
        return moment or text

    def server_now(self) -> datetime:
        return self.run("SELECT clock_timestamp()")[0][0]

    def members_of(self, role: str) -> set[str]:
        rows = self.run(
            "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname <> current_user",
            [role],
        )
        return {row[0] for row in rows}


def _make_target(port: int, admin_password: str = "") -> Target:
    prefix = f"pgc_{secrets.token_hex(4)}"
    target = Target(port=port, dbname=f"{prefix}_db", prefix=prefix, admin_password=admin_password)
    with target.admin("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
        for role in (target.reader, target.writer):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    with target.admin() as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (amount int)").format(sql.Identifier(TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (42)").format(sql.Identifier(TABLE)))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(TABLE), sql.Identifier(target.reader)))
    return target


def _drop_target(target: Target) -> None:
    """Drop the database, then every role this run made (their memberships go with them)."""
    with target.admin("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.dbname)))
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", [target.prefix + "_"])
        for (role,) in roles.fetchall():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def target():
    made = _make_target(PORT)
    try:
        yield made
    finally:
        _drop_target(made)


@pytest.fixture
def make_login(target):
    """A login role with a password on the target, dropped after the test."""
    made: list[tuple[Target, str]] = []

    def make(on: Target | None = None, *, password: str = "login-pw") -> str:
        where = on or target
        name = f"{where.prefix}_login_{secrets.token_hex(3)}"
        where.run(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        made.append((where, name))
        return name

    yield make
    for where, name in made:
        where.run(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _system(admin_user, on: Target, *, name: str = "Ledger DB", **overrides):
    settings = {
        "host": HOST,
        "port": on.port,
        "dbname": on.dbname,
        "user": ADMIN,
        "password": on.admin_password or "unused-with-trust",
        "sslmode": "disable",
        "set_valid_until": True,
        **overrides,
    }
    return system_create(
        actor=admin_user, name=name, owner=PersonFactory(), connector="postgresql", connector_settings=settings
    )


def _entitlement(admin_user, system, role: str, name: str = "Ledger read"):
    return entitlement_create(actor=admin_user, system=system, name=name, owner=PersonFactory(), target_name=role)


@pytest.fixture
def system(admin_user, target):
    return _system(admin_user, target)


@pytest.fixture
def reader(admin_user, system, target):
    return _entitlement(admin_user, system, target.reader)


def _jit(admin_user, identity, entitlement, duration=HOUR):
    return grant_create(
        actor=admin_user, identity=identity, entitlement=entitlement, kind=GrantKind.JIT, duration=duration
    )


def _confirmation(grant, action: str) -> str:
    return AuditEvent.objects.get(action=action, target_id=str(grant.pk)).data["confirmation"]


#
# The journey: in force, revoked, expired
#


def test_the_login_reads_while_the_grant_is_in_force_and_not_after_it_is_revoked(
    admin_user, target, reader, make_login
):
    # given a login that may not read yet, and a just-in-time grant for its identity
    login = make_login()
    bot = MachineFactory(external_id=login)
    assert target.read_as(login) == "permission denied"
    grant = _jit(admin_user, bot, reader)

    # when the outbox delivers it
    outbox_dispatch()

    # then the login reads, its validity ends with the grant (plus the margin), and the trail says what was done
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    assert target.read_as(login) == "read"
    valid_until = target.valid_until(login)
    assert grant.expires_at + MARGIN - timedelta(seconds=30) <= valid_until <= grant.expires_at + MARGIN
    confirmation = _confirmation(grant, "grant.activated")
    assert confirmation.startswith(f'GRANT "{target.reader}" TO "{login}"; VALID UNTIL ')

    # when it is revoked and the revocation delivered
    grant_revoke(grant_id=grant.pk, actor=admin_user, reason="task done")
    outbox_dispatch()

    # then the target confirmed it, the login reads no more and cannot sign in any more
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert target.read_as(login) == "permission denied"
    assert target.members_of(target.reader) == set()
    assert target.valid_until(login) <= target.server_now()
    assert _confirmation(grant, "grant.revoked") == f'REVOKE "{target.reader}" FROM "{login}"; VALID UNTIL now'


def test_after_expiry_the_sweep_takes_the_access_away(admin_user, target, reader, make_login):
    # given a one-hour grant in force
    login = make_login()
    grant = _jit(admin_user, MachineFactory(external_id=login), reader)
    outbox_dispatch()
    grant.refresh_from_db()
    assert target.read_as(login) == "read"

    # when the portal's clock passes its end, the sweep runs and its revocation is delivered
    with time_machine.travel(grant.expires_at + timedelta(minutes=1)):
        assert grants_expire_due() == 1
        outbox_dispatch()

    # then it has expired, confirmed by the target, and the login reads no more
    grant.refresh_from_db()
    assert grant.status == GrantStatus.EXPIRED
    assert target.read_as(login) == "permission denied"
    assert target.valid_until(login) <= target.server_now()
    assert _confirmation(grant, "grant.expired").startswith(f'REVOKE "{target.reader}" FROM "{login}"')


def test_valid_until_follows_the_latest_end_of_the_identitys_access(admin_user, target, system, reader, make_login):
    # given a time-boxed grant, then a standing one on another role of the same system
    login = make_login()
    bot = MachineFactory(external_id=login)
    timed = _jit(admin_user, bot, reader)
    outbox_dispatch()
    writer = _entitlement(admin_user, system, target.writer, name="Ledger write")
    standing = grant_create(actor=admin_user, identity=bot, entitlement=writer)
    outbox_dispatch()
    # then the standing one keeps the login valid without end
    assert target.valid_until(login) == "infinity"

    # when the standing grant is revoked
    grant_revoke(grant_id=standing.pk, actor=admin_user, reason="no longer needed")
    outbox_dispatch()

    # then the login stays valid until the time-boxed grant's end, and still reads through it
    timed.refresh_from_db()
    assert timed.expires_at + MARGIN - timedelta(seconds=30) <= target.valid_until(login) <= timed.expires_at + MARGIN
    assert target.members_of(target.reader) == {login} and target.members_of(target.writer) == set()
    assert target.read_as(login) == "read"

    # and a renewal moves it along (the connector's `extend`, for the renewal's end)
    renewed = grant_renew(grant_id=timed.pk, actor=admin_user, duration=HOUR)
    result = connector_for(system).extend(renewed)
    assert result.outcome is Outcome.CONFIRMED
    assert renewed.expires_at + MARGIN - timedelta(seconds=30) <= target.valid_until(login)


def test_roles_are_cluster_wide_so_another_system_on_the_same_server_keeps_what_it_still_needs(
    admin_user, target, reader, make_login
):
    # given the same role governed by a second system on the same server, granted there without end
    login = make_login()
    bot = MachineFactory(external_id=login)
    replica = _entitlement(admin_user, _system(admin_user, target, name="Ledger replica"), target.reader)
    timed, standing = _jit(admin_user, bot, reader), grant_create(actor=admin_user, identity=bot, entitlement=replica)
    outbox_dispatch()

    # when the first system's grant is revoked
    grant_revoke(grant_id=timed.pk, actor=admin_user, reason="task done")
    outbox_dispatch()

    # then the membership and the login's validity stay, for the other system's grant
    timed.refresh_from_db()
    assert timed.status == GrantStatus.REVOKED
    assert (
        _confirmation(timed, "grant.revoked")
        == f'"{target.reader}" kept: grant #{standing.pk} still needs it; VALID UNTIL infinity'
    )
    assert target.read_as(login) == "read" and target.valid_until(login) == "infinity"


def test_delivering_twice_changes_nothing_the_second_time(admin_user, target, system, reader, make_login):
    # given a grant provisioned once
    login = make_login()
    grant = _jit(admin_user, MachineFactory(external_id=login), reader)
    outbox_dispatch()
    grant.refresh_from_db()
    connector = connector_for(system)

    # when the same provisioning arrives again (at-least-once delivery)
    again = connector.provision(grant)

    # then it is confirmed, says the membership was held already, and nothing else changed
    assert again.outcome is Outcome.CONFIRMED and "(already held)" in again.detail
    assert target.members_of(target.reader) == {login}

    # when the removal arrives twice
    first, second = connector.revoke(grant), connector.revoke(grant)

    # then both are confirmed, the second has nothing left to remove
    assert first.detail.startswith("REVOKE") and first.outcome is Outcome.CONFIRMED
    assert second.outcome is Outcome.CONFIRMED and "nothing to remove" in second.detail
    assert target.members_of(target.reader) == set()


def test_a_session_that_took_the_role_with_set_role_is_ended_when_asked(admin_user, target, make_login):
    # given a system that ends sessions on removal, and a login reading through SET ROLE in an open session
    system = _system(admin_user, target, name="Strict DB", end_sessions=True)
    login = make_login()
    grant = _jit(admin_user, MachineFactory(external_id=login), _entitlement(admin_user, system, target.reader))
    outbox_dispatch()
    session = psycopg.connect(host=HOST, port=PORT, user=login, dbname=target.dbname, autocommit=True)
    session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(target.reader)))

    # when the grant is revoked
    grant_revoke(grant_id=grant.pk, actor=admin_user, reason="task done")
    outbox_dispatch()

    # then the session, which would have kept the role's rights, is gone, and the trail says so
    with pytest.raises(psycopg.OperationalError, match="terminating connection"):
        session.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE)))
    session.close()
    assert _confirmation(grant, "grant.revoked").startswith(
        f'REVOKE "{target.reader}" FROM "{login}"; ended 1 open session; VALID UNTIL now'
    )


#
# Failures: permanent at once, retriable later
#


def test_a_role_that_does_not_exist_fails_the_grant_at_once_without_retries(admin_user, target, system, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 8
    missing = _entitlement(admin_user, system, f"{target.prefix}_missing", name="Ledger audit")
    grant = _jit(admin_user, MachineFactory(external_id=f"{target.prefix}_anyone"), missing)

    result = outbox_dispatch()

    assert (result.dead, result.failed) == (1, 0)
    message = OutboxMessage.objects.get(kind="connector.provision")
    assert message.status == OutboxStatus.DEAD and message.attempts == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED
    assert f"Role {target.prefix}_missing does not exist" in grant.last_error
    assert "postgresql connector of Ledger DB" in grant.last_error


def test_a_login_that_does_not_exist_is_permanent_too_and_names_the_identity(admin_user, target, reader):
    grant = _jit(admin_user, MachineFactory(name="ghost-bot", external_id=f"{target.prefix}_ghost"), reader)
    assert outbox_dispatch().dead == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED
    assert f"Login {target.prefix}_ghost (ghost-bot's account) does not exist" in grant.last_error


def test_an_unreachable_server_is_tried_again_later(admin_user, target, settings, make_login):
    # given a system whose server does not listen (a port nothing listens on)
    settings.OUTBOX_MAX_ATTEMPTS = 8
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        closed_port = probe.getsockname()[1]
    down = _system(admin_user, target, name="Down DB", port=closed_port)
    grant = _jit(admin_user, MachineFactory(external_id=make_login()), _entitlement(admin_user, down, target.reader))

    result = outbox_dispatch()

    # then the attempt failed, the message waits for its next try, and the grant still waits for it
    assert (result.failed, result.dead) == (1, 0)
    message = OutboxMessage.objects.get(kind="connector.provision")
    assert message.status == OutboxStatus.PENDING and message.attempts == 1
    assert "RetriableError" in message.last_error and "Cannot reach PostgreSQL" in message.last_error
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING_PROVISION


def test_a_target_that_keeps_the_login_locked_is_retried_later_and_half_a_change_is_never_left(
    admin_user, target, system, reader, make_login, settings
):
    # given somebody else's open transaction changing the login on the target
    settings.CONNECTOR_TIMEOUT_SECONDS = 1
    login = make_login()
    grant = _jit(admin_user, MachineFactory(external_id=login), reader)
    with target.admin() as other:
        other.execute("BEGIN")
        other.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 5").format(sql.Identifier(login)))

        # when the connector provisions meanwhile
        with pytest.raises(RetriableError, match="another session held a lock on the role too long"):
            connector_for(system).provision(grant)
        other.execute("ROLLBACK")

    # then it gave up within its time limit, and the GRANT made before the wait was undone with the rest
    assert target.members_of(target.reader) == set()


#
# Reconciliation and the connection test
#


def test_holdings_list_what_the_target_grants_and_a_stray_membership_can_be_removed(
    admin_user, target, system, reader, make_login
):
    # given one membership made by the portal and one made by hand
    governed, stray = make_login(), make_login()
    _jit(admin_user, MachineFactory(external_id=governed), reader)
    outbox_dispatch()
    target.run(sql.SQL("GRANT {} TO {}").format(sql.Identifier(target.reader), sql.Identifier(stray)))
    connector = connector_for(system)

    # then holdings lists both, in the governed roles only
    assert connector.holdings() == {Holding(governed, target.reader), Holding(stray, target.reader)}

    # when the stray one is removed at the target
    result = connector.remove_holding(Holding(stray, target.reader))

    # then only the governed one is left
    assert result.outcome is Outcome.CONFIRMED and result.detail == f'REVOKE "{target.reader}" FROM "{stray}"'
    assert connector.holdings() == {Holding(governed, target.reader)}


def test_the_connection_test_says_which_role_is_missing_and_what_the_admin_may_not_do(
    admin_user, target, system, reader, make_login
):
    _entitlement(admin_user, system, f"{target.prefix}_missing", name="Ledger audit")

    checks = {check.name: check for check in system_test_connection(system_id=system.pk, actor=admin_user)}

    assert checks["Connection"].ok and checks["Connection"].detail.startswith("PostgreSQL ")
    assert checks[f"Role {target.reader}"].ok
    missing = checks[f"Role {target.prefix}_missing"]
    assert not missing.ok and missing.detail.startswith("Does not exist on the server")
    assert checks["VALID UNTIL"].ok

    # an admin login with no CREATEROLE and no ADMIN OPTION is told what it lacks
    weak = make_login()
    weak_system = _system(admin_user, target, name="Weak DB", user=weak)
    weak_reader = _entitlement(admin_user, weak_system, target.reader)
    checks = {check.name: check for check in system_test_connection(system_id=weak_system.pk, actor=admin_user)}
    assert not checks[f"Role {target.reader}"].ok
    assert f'GRANT "{target.reader}" TO "{weak}" WITH ADMIN OPTION' in checks[f"Role {target.reader}"].detail
    assert not checks["VALID UNTIL"].ok and "CREATEROLE" in checks["VALID UNTIL"].detail
    # and granting with it fails at once, saying what it lacks
    grant = _jit(admin_user, MachineFactory(external_id=make_login()), weak_reader)
    assert outbox_dispatch().dead == 1
    grant.refresh_from_db()
    assert (
        grant.status == GrantStatus.PROVISION_FAILED and f"The admin login {weak} lacks a privilege" in grant.last_error
    )


#
# A server that checks passwords: a refused admin password, and VALID UNTIL as the second barrier
#


def _initdb() -> str | None:
    found = shutil.which("initdb") or sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _skip_unless_required(why: str) -> None:
    """Where PostgreSQL is required (CI: REQUIRE_POSTGRES=1), a missing private server fails instead of skipping."""
    if django_settings.REQUIRE_POSTGRES:
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def password_server():
    """A private PostgreSQL with scram-sha-256 authentication on a free port, stopped and removed after."""
    initdb = _initdb()
    if initdb is None:
        _skip_unless_required("initdb not found: the password tests need a private PostgreSQL")
    bindir = Path(initdb).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    base = Path(tempfile.mkdtemp(prefix="pgc-scram-"))
    password = secrets.token_hex(8)
    (base / "pw").write_text(password)
    if as_postgres:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pw", "postgres")
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    data = base / "data"
    options = f"-p {port} -k {base} -c listen_addresses={HOST} -c fsync=off -c full_page_writes=off"
    try:
        subprocess.run(
            [*as_postgres, initdb, "-D", data, "-N", "-A", "scram-sha-256", "-U", ADMIN, "--pwfile", base / "pw"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*as_postgres, bindir / "pg_ctl", "-D", data, "-o", options, "-l", base / "log", "-w", "start"],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        _skip_unless_required(f"could not start a private PostgreSQL: {exc}")
    made = _make_target(port, admin_password=password)
    try:
        yield made
    finally:
        subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_a_refused_admin_password_is_said_plainly_and_fails_the_grant_at_once(admin_user, password_server, make_login):
    wrong = _system(admin_user, password_server, name="Locked DB", password="not-the-password")
    reader = _entitlement(admin_user, wrong, password_server.reader)

    checks = system_test_connection(system_id=wrong.pk, actor=admin_user)

    assert [(check.name, check.ok) for check in checks] == [("Connection", False)]
    assert "the admin password was refused: correct it in the connector's settings" in checks[0].detail
    assert "not-the-password" not in checks[0].detail
    grant = _jit(admin_user, MachineFactory(external_id=make_login(password_server)), reader)
    assert outbox_dispatch().dead == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED and "admin password was refused" in grant.last_error


def test_valid_until_stops_the_login_signing_in_when_nobody_revoked_it(admin_user, password_server, make_login):
    # given a login on a server that checks passwords, and a system for it
    login = make_login(password_server, password="login-pw")
    system = _system(admin_user, password_server, name="Vault DB")
    reader = _entitlement(admin_user, system, password_server.reader)
    bot = MachineFactory(external_id=login)

    # when a one-hour grant was provisioned two hours ago and nothing removed it since (the portal was down)
    with time_machine.travel(password_server.server_now() - 2 * HOUR):
        grant = _jit(admin_user, bot, reader)
        outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and password_server.members_of(password_server.reader) == {login}

    # then the login still holds the role, but its password no longer signs it in
    assert password_server.read_as(login, "login-pw") == "sign-in refused"

    # and a grant in force now lets it in again
    grant_revoke(grant_id=grant.pk, actor=admin_user, reason="ended")
    outbox_dispatch()
    _jit(admin_user, bot, reader)
    outbox_dispatch()
    assert password_server.read_as(login, "login-pw") == "read"
