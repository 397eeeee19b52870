"""The PostgreSQL connector: GRANT / REVOKE a database role to a login role on a target server.

Real just-in-time database access. A grant is `GRANT <role> TO <login>`, where the role is the
entitlement's name on the target and the login the identity's account there; its removal is
`REVOKE <role> FROM <login>`, confirmed by reading `pg_auth_members` back, so a membership that
somebody else granted as well is never reported as gone while it is still there.

Identifiers are always quoted by psycopg's `sql.Identifier`, never formatted by hand. VALID UNTIL
is a utility statement that takes no bind parameter, so its timestamp is a `sql.Literal`.

With `set_valid_until` the login's VALID UNTIL follows its access, a second barrier if the portal is
down when a grant ends: the latest end among the identity's grants in force or being provisioned on
this server ('infinity' if one is standing), plus a margin for clocks and the sweep; the target's
own 'now' once none remain. Login roles are cluster-wide, so "this server" is every PostgreSQL
system of the portal with the same host and port whose account for the identity is the same login.
VALID UNTIL only stops password sign-in (scram, md5, password): trust, peer, cert and GSS logins
ignore it; and it stops the login's whole sign-in, so use it for logins that exist for the access
the portal governs. Neither ends a session already open: privileges are checked per statement, so
a REVOKE bites at the next one, except in a session that ran SET ROLE to the role, which keeps its
rights until it ends; `end_sessions` ends the login's sessions after a removal for that reason. The membership and VALID UNTIL change in one transaction on the target, under an
advisory lock per login, and the portal's grants are read inside it: two workers changing one
login's access at once take turns, and the later one sets VALID UNTIL from what it sees then.

Errors: a refused connection, a timeout, a server starting or shutting down, a serialization
failure or deadlock are `RetriableError`; a refused password, a missing database, role or login,
a privilege the admin login lacks are `PermanentError`. A failed connection carries no SQLSTATE in
libpq, so it is classified by the server's words, which are English unless the server's
lc_messages says otherwise (then such failures are retried until the outbox gives up).
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from django import forms
from django.conf import settings as django_settings
from django.db.models import Q
from psycopg import sql

from audit.kernel import clock

from ..choices import Connector, GrantKind, GrantStatus, LifecycleStatus
from ..querysets import in_force_q
from . import (
    BaseConnector,
    Check,
    ConnectorError,
    ConnectorSettingsForm,
    Holding,
    Outcome,
    PermanentError,
    Result,
    RetriableError,
)

SSL_MODES = [(mode, mode) for mode in ("prefer", "require", "verify-ca", "verify-full", "disable")]
DEFAULT_MARGIN_MINUTES = 5
APPLICATION_NAME = "access-portal connector"
INFINITY = "infinity"
NOW = "now"  # the target's own clock, read when the statement runs


class PostgresqlSettingsForm(ConnectorSettingsForm):
    host = forms.CharField(label="Host", max_length=255)
    port = forms.IntegerField(label="Port", min_value=1, max_value=65535, initial=5432)
    dbname = forms.CharField(label="Database", max_length=63)
    user = forms.CharField(
        label="Admin login",
        max_length=63,
        help_text="A login that may GRANT the governed roles (CREATEROLE or ADMIN OPTION).",
    )
    password = forms.CharField(
        label="Admin password", max_length=200, required=False, widget=forms.PasswordInput(render_value=False)
    )
    sslmode = forms.ChoiceField(label="TLS", choices=SSL_MODES, initial="prefer")
    set_valid_until = forms.BooleanField(
        label="Also limit the login's validity",
        required=False,
        initial=True,
        help_text="Sets the login role's VALID UNTIL to the grant's expiry: a second barrier if the portal is down.",
    )
    end_sessions = forms.BooleanField(
        label="End the login's sessions when access is removed",
        required=False,
        initial=False,
        help_text="A session that ran SET ROLE keeps the role's rights after REVOKE until it ends. Ends every "
        "session of the login; the admin login needs pg_signal_backend (or superuser).",
    )
    valid_until_margin_minutes = forms.IntegerField(
        label="Validity margin (minutes)",
        min_value=0,
        max_value=1440,
        initial=DEFAULT_MARGIN_MINUTES,
        required=False,
        help_text="Added to VALID UNTIL: covers the sweep's minute, the revocation's delivery and clock drift.",
    )


#
# Error classification
#

# SQLSTATE classes and codes worth another try: connection exceptions, transaction rollbacks
# (serialization failure, deadlock), insufficient resources (too many connections), operator
# intervention (shutting down, starting up, statement timeout), a lock not available.
_RETRIABLE_CLASSES = ("08", "40", "53", "57", "58")
_RETRIABLE_STATES = ("55P03", "55006")
_RETRIABLE_WHY = {
    "": "the connection was lost",
    "55P03": "another session held a lock on the role too long",
    "57014": "a statement ran past the connector's time limit",
    "40001": "a concurrent change conflicted",
    "40P01": "a concurrent change deadlocked",
    "53300": "the server has too many connections",
    "57P01": "the server is shutting down",
    "57P03": "the server is not accepting connections yet",
}
# Phrases of connection failures (they carry no SQLSTATE), with what a person should do about them.
_PERMANENT_CONNECT = (
    ("password authentication failed", "the admin password was refused: correct it in the connector's settings"),
    ("no password supplied", "the server asks for a password and none is set in the connector's settings"),
    ("no pg_hba.conf entry", "the server's pg_hba.conf does not let this login connect from the portal"),
    ("does not exist", "check the Database and Admin login settings"),
    ("ssl was required", "the server does not offer TLS: choose another TLS mode or enable TLS on the server"),
    ("server does not support ssl", "the server does not offer TLS: choose another TLS mode or enable TLS on it"),
    ("certificate", "the server's certificate was not accepted (TLS mode verify-ca / verify-full)"),
    ("name or service not known", "the host name does not resolve: check the Host setting"),
    ("could not translate host name", "the host name does not resolve: check the Host setting"),
    ("permission denied for database", "the admin login may not connect to this database (CONNECT privilege)"),
    ("is not permitted to log in", "the admin login is NOLOGIN"),
)
_TEMPORARY_NAME_FAILURE = "temporary failure in name resolution"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _connect_failed(exc: Exception, where: str, timeout: int) -> ConnectorError:
    """A failed connection, said for the person who fixes it; permanent when waiting will not fix it."""
    said = _one_line(exc).removeprefix("connection failed: ")
    lowered = said.lower()
    if "timeout expired" in lowered:
        return RetriableError(f"PostgreSQL at {where} did not answer within {timeout} s; trying again later.")
    if _TEMPORARY_NAME_FAILURE not in lowered:
        for phrase, advice in _PERMANENT_CONNECT:
            if phrase in lowered:
                return PermanentError(f"Cannot sign in to PostgreSQL at {where}: {advice}. The server said: {said}")
    return RetriableError(f"Cannot reach PostgreSQL at {where}; trying again later. {said}")


def _statement_failed(exc: psycopg.Error, where: str, user: str) -> ConnectorError:
    """A statement the target refused or could not finish: retriable only when waiting may help."""
    state = exc.sqlstate or ""
    said = _one_line(exc.diag.message_primary or exc)
    if not state or state.startswith(_RETRIABLE_CLASSES) or state in _RETRIABLE_STATES:
        why = _RETRIABLE_WHY.get(state, "it did not finish")
        return RetriableError(f"PostgreSQL at {where}: {why}; trying again later. {said} ({state or 'no SQLSTATE'})")
    if state == "XX000" and "concurrently" in said:  # two ALTER ROLE at once on one row of pg_authid
        return RetriableError(f"PostgreSQL at {where} was changing the same role at once: {said}")
    if state == "42501":
        return PermanentError(
            f"The admin login {user} lacks a privilege on {where}: {said}. It needs ADMIN OPTION on each "
            "governed role (or CREATEROLE before PostgreSQL 16), and CREATEROLE to set VALID UNTIL."
        )
    return PermanentError(f"PostgreSQL at {where} refused: {said} (SQLSTATE {state}).")


#
# The connector
#


class PostgresqlConnector(BaseConnector):
    """GRANT and REVOKE a role to a login role; the login's VALID UNTIL follows its access."""

    name = "postgresql"
    settings_form = PostgresqlSettingsForm
    secret_fields = ("password",)

    @property
    def where(self) -> str:
        return f"{self.settings.get('host')}:{self.settings.get('port') or 5432}/{self.settings.get('dbname')}"

    @property
    def admin(self) -> str:
        return str(self.settings.get("user") or "")

    def _connect_params(self) -> dict:
        timeout = int(django_settings.CONNECTOR_TIMEOUT_SECONDS)
        params = {
            "host": self.settings.get("host"),
            "port": int(self.settings.get("port") or 5432),
            "dbname": self.settings.get("dbname"),
            "user": self.admin,
            "sslmode": self.settings.get("sslmode") or "prefer",
            "connect_timeout": timeout,
            "application_name": APPLICATION_NAME,
            "autocommit": True,
        }
        if self.settings.get("password"):
            params["password"] = self.settings["password"]
        return params

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection]:
        """An autocommit session on the target; every psycopg error leaves as a classified ConnectorError."""
        params = self._connect_params()
        try:
            conn = psycopg.connect(**params)
        except psycopg.Error as exc:
            raise _connect_failed(exc, self.where, params["connect_timeout"]) from exc
        try:
            with conn:
                yield conn
        except psycopg.Error as exc:
            raise _statement_failed(exc, self.where, self.admin) from exc

    @contextmanager
    def _transaction(self, login: str | None = None) -> Iterator[psycopg.Connection]:
        """A session and one transaction on the target, bounded in time, holding the login's lock if named.

        The limits are SET LOCAL rather than startup options, which a pooler such as PgBouncer may
        refuse; with the lock they go in one round trip. Changes to one login's access take turns
        (an advisory lock, released at commit), so VALID UNTIL is set from what the later one sees.
        """
        limit = int(django_settings.CONNECTOR_TIMEOUT_SECONDS) * 1000
        statements = [
            sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(limit)),
            # Shorter, so that a wait on somebody else's lock is reported as that.
            sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(limit // 2)),
        ]
        if login is not None:
            key = hashlib.blake2b(f"access-portal:login:{login}".encode(), digest_size=8).digest()
            statements.append(
                sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(int.from_bytes(key, "big", signed=True)))
            )
        with self._session() as conn, conn.transaction():
            conn.execute(sql.SQL("; ").join(statements))  # no parameters: one simple query, one round trip
            yield conn

    #
    # Provision, revoke, extend
    #
    def provision(self, grant) -> Result:
        """GRANT the role to the login (a membership held already is kept) and move VALID UNTIL with it."""
        role, login = self.target_name_for(grant.entitlement), self.account_for(grant.identity)
        with self._transaction(login) as conn:
            state = _state(conn, role, login)
            if not state.role_exists:
                raise PermanentError(
                    f"Role {role} does not exist on {self.where}: create it, or correct the entitlement's target name."
                )
            if not state.login_exists:
                raise self._no_login(login, grant.identity)
            if state.role_is_superuser:
                raise PermanentError(f"Role {role} is a superuser role: the portal never grants one.")
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(login)))
            done = f"GRANT {_quoted(conn, role)} TO {_quoted(conn, login)}" + (" (already held)" if state.held else "")
            until = self._set_valid_until(conn, login, self._ends(grant, login, including_it=True))
        return Result(Outcome.CONFIRMED, reference=f"{login} in {role}"[:200], detail=_sentence(done, until))

    def revoke(self, grant) -> Result:
        """REVOKE the role from the login and confirm it is gone; a membership already gone is a success.

        The role stays when another live grant of the identity on this server needs the same role.
        """
        role, login = self.target_name_for(grant.entitlement), self.account_for(grant.identity)
        with self._transaction(login) as conn:
            state = _state(conn, role, login)
            if not state.login_exists:
                return Result(
                    Outcome.CONFIRMED, detail=f"Login {_quoted(conn, login)} does not exist: it holds nothing."
                )
            others = self._others(grant, login)
            keeper = next((other.pk for other in others if other.role == role), None)
            if keeper is not None:
                done = f"{_quoted(conn, role)} kept: grant #{keeper} still needs it"
            elif not state.role_exists:
                done = f"Role {_quoted(conn, role)} does not exist: nothing to remove"
            elif state.held:
                _revoke_membership(conn, role, login)
                done = f"REVOKE {_quoted(conn, role)} FROM {_quoted(conn, login)}"
            else:
                done = f"{_quoted(conn, login)} did not hold {_quoted(conn, role)}: nothing to remove"
            until = self._set_valid_until(conn, login, [other.end for other in others])
        if keeper is None and self.settings.get("end_sessions"):
            done += f"; {self._end_sessions(login)}"
        return Result(Outcome.CONFIRMED, detail=_sentence(done, until))

    def extend(self, grant) -> Result:
        """Move the login's VALID UNTIL after a renewal changed a grant's end (no GRANT: the access continues)."""
        login = self.account_for(grant.identity)
        if not self.settings.get("set_valid_until"):
            return Result(Outcome.CONFIRMED, detail="VALID UNTIL is not managed on this system: nothing to do.")
        with self._transaction(login) as conn:
            if not _state(conn, "", login).login_exists:
                raise self._no_login(login, grant.identity)
            until = self._set_valid_until(conn, login, self._ends(grant, login, including_it=True))
        return Result(Outcome.CONFIRMED, detail=f"VALID UNTIL {until}")

    def remove_holding(self, holding: Holding) -> Result:
        """REVOKE a membership found on the target that no grant governs (only in roles this system governs)."""
        if holding.target_name not in self._governed_roles():
            raise PermanentError(f"{holding.target_name} is not a role this system governs; the portal leaves it be.")
        with self._transaction(holding.account) as conn:
            role, login = _quoted(conn, holding.target_name), _quoted(conn, holding.account)
            if not _state(conn, holding.target_name, holding.account).held:
                return Result(Outcome.CONFIRMED, detail=f"{login} did not hold {role}: nothing to remove")
            _revoke_membership(conn, holding.target_name, holding.account)
        return Result(Outcome.CONFIRMED, detail=f"REVOKE {role} FROM {login}")

    def _end_sessions(self, login: str) -> str:
        """End the login's open sessions, after the REVOKE committed (a new session gets no role back).

        Asked again on every delivery, so a retry after a failure here still ends them.
        """
        with self._session() as conn:
            (ended,) = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE usename = %s AND pid <> pg_backend_pid()",
                [login],
            ).fetchone()
        return f"ended {ended} open session{'s' if ended != 1 else ''}"

    def _no_login(self, login: str, identity) -> PermanentError:
        return PermanentError(
            f"Login {login} ({identity.name}'s account) does not exist on {self.where}: create it, or check "
            "which identity field names accounts (Account name from)."
        )

    #
    # Reconciliation and the connection test
    #
    def holdings(self) -> set[Holding]:
        """Every direct membership in the roles this system governs, except the admin login's own."""
        roles = sorted(self._governed_roles())
        if not roles:
            return set()
        with self._transaction() as conn:
            rows = conn.execute(
                """
                SELECT u.rolname, r.rolname
                FROM pg_auth_members m
                JOIN pg_roles r ON r.oid = m.roleid
                JOIN pg_roles u ON u.oid = m.member
                WHERE r.rolname = ANY(%s) AND u.rolname <> current_user
                """,
                [roles],
            ).fetchall()
        return {Holding(account, role) for account, role in rows}

    def test_connection(self) -> list[Check]:
        try:
            with self._transaction() as conn:
                return self._checks(conn)
        except ConnectorError as exc:
            return [Check("Connection", False, str(exc))]

    def _checks(self, conn: psycopg.Connection) -> list[Check]:
        tls = "TLS" if conn.pgconn.ssl_in_use else "no TLS"
        version = conn.info.parameter_status("server_version") or "?"
        checks = [Check("Connection", True, f"PostgreSQL {version} at {self.where} as {self.admin} ({tls}).")]
        superuser, createrole = conn.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        before_16 = conn.info.server_version < 160000
        roles = sorted(self._governed_roles())
        if not roles:
            checks.append(Check("Governed roles", True, "No active entitlements yet: nothing to grant."))
        rows = conn.execute(
            """
            SELECT wanted.name, r.oid IS NOT NULL, coalesce(r.rolsuper, false),
                   r.oid IS NOT NULL AND pg_has_role(r.oid, 'MEMBER WITH ADMIN OPTION')
            FROM unnest(%s::text[]) AS wanted(name) LEFT JOIN pg_roles r ON r.rolname = wanted.name
            ORDER BY wanted.name
            """,
            [roles],
        ).fetchall()
        for name, exists, is_superuser_role, admin_option in rows:
            checks.append(
                self._role_check(name, exists, is_superuser_role, admin_option, superuser, createrole, before_16)
            )
        if self.settings.get("set_valid_until"):
            checks.append(self._valid_until_check(superuser, createrole, before_16))
        if self.settings.get("end_sessions"):
            (may_signal,) = conn.execute("SELECT pg_has_role('pg_signal_backend', 'MEMBER')").fetchone()
            checks.append(
                Check("Ending sessions", True, f"{self.admin} may end logins' sessions.")
                if superuser or may_signal
                else Check(
                    "Ending sessions",
                    False,
                    f"{self.admin} may not end other logins' sessions: "
                    f"GRANT pg_signal_backend TO {_quoted(None, self.admin)}.",
                )
            )
        return checks

    def _valid_until_check(self, superuser: bool, createrole: bool, before_16: bool) -> Check:
        if not (superuser or createrole):
            detail = f"{self.admin} may not set logins' VALID UNTIL: give it CREATEROLE, or turn the option off."
            return Check("VALID UNTIL", False, detail)
        needs = "" if superuser or before_16 else " (from PostgreSQL 16 it also needs ADMIN OPTION on each login)"
        return Check("VALID UNTIL", True, f"{self.admin} may set logins' VALID UNTIL{needs}.")

    def _role_check(self, name, exists, is_superuser_role, admin_option, superuser, createrole, before_16) -> Check:
        label = f"Role {name}"
        if not exists:
            return Check(
                label, False, "Does not exist on the server: create it, or correct the entitlement's target name."
            )
        if is_superuser_role:
            return Check(
                label, False, "Is a superuser role: the portal never grants one (a member could SET ROLE to it)."
            )
        if superuser or admin_option or (before_16 and createrole):
            how = "superuser" if superuser else "ADMIN OPTION" if admin_option else "CREATEROLE"
            return Check(label, True, f"Exists; {self.admin} may grant it ({how}).")
        return Check(
            label,
            False,
            f"Exists, but {self.admin} may not grant it: run GRANT {_quoted(None, name)} TO {_quoted(None, self.admin)} "
            "WITH ADMIN OPTION" + (" (or give it CREATEROLE)." if before_16 else "."),
        )

    #
    # What the portal knows: governed roles, the identity's other grants, their ends
    #
    def _governed_roles(self) -> set[str]:
        from ..models import Entitlement

        rows = Entitlement.objects.filter(system=self.system, status=LifecycleStatus.ACTIVE).values_list(
            "target_name", "name"
        )
        return {target_name or name for target_name, name in rows}

    def _same_server_system_ids(self, grant, login: str) -> list[int]:
        """The PostgreSQL systems on this server (roles are cluster-wide) where the identity's account is `login`."""
        from ..models import System

        system = self.system or grant.entitlement.system
        host, port = str(self.settings.get("host") or "").lower(), int(self.settings.get("port") or 5432)
        ids = {system.pk}
        candidates = System.objects.filter(connector=Connector.POSTGRESQL, status=LifecycleStatus.ACTIVE).exclude(
            pk=system.pk
        )
        for other in candidates.only("pk", "connector_settings"):
            theirs = other.connector_settings or {}
            if (str(theirs.get("host") or "").lower(), int(theirs.get("port") or 5432)) != (host, port):
                continue
            try:
                if BaseConnector(theirs, other).account_for(grant.identity) == login:
                    ids.add(other.pk)
            except PermanentError:
                continue  # the identity has no account there
        return sorted(ids)

    def _others(self, grant, login: str, now: datetime | None = None) -> list["_Access"]:
        """The identity's other grants on this server whose access is in force or being provisioned.

        Read while the target holds the login's lock: what a later change sees includes this one.
        """
        from ..models import Grant

        now = now or clock.database_now()
        rows = (
            Grant.objects.filter(
                identity_id=grant.identity_id, entitlement__system_id__in=self._same_server_system_ids(grant, login)
            )
            .exclude(pk=grant.pk)
            .filter(in_force_q(now) | Q(status=GrantStatus.PENDING_PROVISION))
            .values_list(
                "pk",
                "entitlement__target_name",
                "entitlement__name",
                "kind",
                "status",
                "expires_at",
                "approved_duration",
            )
        )
        return [
            _Access(pk, target_name or name, _end(kind, status, expires_at, duration, now=now))
            for pk, target_name, name, kind, status, expires_at, duration in rows
        ]

    def _ends(self, grant, login: str, *, including_it: bool) -> list[datetime | None]:
        if not self.settings.get("set_valid_until"):
            return []
        now = clock.database_now()
        ends = [other.end for other in self._others(grant, login, now)]
        if including_it:
            ends.append(_end(grant.kind, grant.status, grant.expires_at, grant.approved_duration, now=now))
        return ends

    def _set_valid_until(self, conn: psycopg.Connection, login: str, ends: list[datetime | None]) -> str:
        """ALTER ROLE login VALID UNTIL the latest of `ends` plus the margin; "" when VALID UNTIL is not managed."""
        if not self.settings.get("set_valid_until"):
            return ""
        margin = self.settings.get("valid_until_margin_minutes")
        margin = timedelta(minutes=DEFAULT_MARGIN_MINUTES if margin in (None, "") else int(margin))
        value, shown = _validity(ends, margin)
        conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(login), sql.Literal(value)))
        return shown


def _end(kind: str, status: str, expires_at: datetime | None, duration: timedelta | None, *, now: datetime):
    """When a grant's access ends (None: never). One being provisioned starts its clock about now."""
    if kind == GrantKind.STANDING:
        return None
    if status == GrantStatus.ACTIVE:
        return expires_at
    end = now + duration if duration else expires_at
    return min(end, expires_at) if end and expires_at else end  # a break-glass grant's hard end


def _validity(ends: list[datetime | None], margin: timedelta) -> tuple[str, str]:
    """VALID UNTIL for access ending at `ends` (None: never), as SQL takes it and as people read it."""
    if not ends:
        return NOW, NOW
    if any(end is None for end in ends):
        return INFINITY, INFINITY
    until = (max(ends) + margin).astimezone(UTC).replace(microsecond=0)
    return until.isoformat(), f"{until:%Y-%m-%d %H:%M:%S} UTC"


def _quoted(conn: psycopg.Connection | None, name: str) -> str:
    return sql.Identifier(name).as_string(conn)


def _sentence(done: str, until: str) -> str:
    return f"{done}; VALID UNTIL {until}" if until else done


@dataclass(frozen=True)
class _Access:
    """Another grant of the identity on this server: its role and when its access ends (None: never)."""

    pk: int
    role: str
    end: datetime | None


@dataclass(frozen=True)
class _State:
    role_exists: bool
    role_is_superuser: bool
    login_exists: bool
    held: bool


def _state(conn: psycopg.Connection, role: str, login: str) -> _State:
    """Whether the role and the login exist, and the login is a direct member of the role: one round trip."""
    row = conn.execute(
        """
        SELECT r.oid IS NOT NULL, coalesce(r.rolsuper, false), u.oid IS NOT NULL,
               EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid AND m.member = u.oid)
        FROM (SELECT 1) AS one
        LEFT JOIN pg_roles r ON r.rolname = %s
        LEFT JOIN pg_roles u ON u.rolname = %s
        """,
        [role, login],
    ).fetchone()
    return _State(*row)


def _grantors(conn: psycopg.Connection, role: str, login: str) -> list[str]:
    """Who granted `login` its direct membership in `role` (several from PostgreSQL 16); [] if none."""
    rows = conn.execute(
        """
        SELECT coalesce(g.rolname, '') FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        LEFT JOIN pg_roles g ON g.oid = m.grantor
        WHERE r.rolname = %s AND u.rolname = %s
        """,
        [role, login],
    ).fetchall()
    return [row[0] for row in rows]


def _revoke_membership(conn: psycopg.Connection, role: str, login: str) -> None:
    """REVOKE and read back: a membership left behind raises.

    From PostgreSQL 16 a plain REVOKE removes only the grant made in the admin login's name; one
    granted by another role is revoked in that role's name where the admin login may, else it is a
    permanent failure naming who granted it: never reported as removed while it is still held.
    """
    conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), sql.Identifier(login)))
    left = _grantors(conn, role, login)
    if not left:
        return
    for grantor in filter(None, left):
        try:
            with conn.transaction():  # a savepoint: a refusal here is reported below, not as the statement's
                conn.execute(
                    sql.SQL("REVOKE {} FROM {} GRANTED BY {}").format(
                        sql.Identifier(role), sql.Identifier(login), sql.Identifier(grantor)
                    )
                )
        except psycopg.errors.InsufficientPrivilege:
            continue
    left = _grantors(conn, role, login)
    if left:
        raise PermanentError(
            f"{login} still holds {role}, granted by {', '.join(sorted(set(left)))}, which the admin login may not "
            "revoke: revoke it as that role or a superuser."
        )
