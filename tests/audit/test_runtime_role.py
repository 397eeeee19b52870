"""Two database roles: the web and the workers run as a role that may only read and append the audit trail.

The role the tests connect as (postgres) is a superuser and owns every table, as an application's only
role does today: it could switch the append-only triggers off. `grant_runtime_role`, run as that owner,
gives another role what the portal needs; the database itself then refuses that role any change to the
trail, before the triggers are even asked, and `check --deploy` tells the one setup from the other.
"""

import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.core.checks import registry
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.models.signals import pre_migrate
from django.test import override_settings

from audit.checks import runtime_role_cannot_rewrite_the_audit_trail as deploy_check
from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import EventSpec, audit_event_record, audit_events_record_many
from audit.verify import verify_chain
from governance.services import identities

pytestmark = pytest.mark.postgres


def _execute(sql: str, params: list | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _new_role(*, login: bool = False) -> str:
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    _execute(f'CREATE ROLE "{name}"' + (" LOGIN" if login else ""))
    return name


@contextmanager
def acting_as(role: str):
    """The default connection as `role`, as if the portal had connected with it (SET ROLE)."""
    _execute(f'SET ROLE "{role}"')
    try:
        yield
    finally:
        _execute("RESET ROLE")


@pytest.fixture
def runtime_role(db) -> str:
    """A role given the runtime rights; created in the test's transaction, so it goes with it."""
    role = _new_role()
    call_command("grant_runtime_role", role)
    return role


def _record(note: str) -> None:
    audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={"note": note})


def _refused(sql: str) -> psycopg.Error:
    """Run `sql` in a savepoint; return the database's refusal (the test fails if it is accepted)."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        _execute(sql)
    return caught.value.__cause__


def _deploy_warnings() -> list[str]:
    return [message.id for message in deploy_check()]


class TestTheRuntimeRoleWritesThroughTheNormalPath:
    def test_it_appends_chained_events_one_at_a_time_and_by_copy(self, runtime_role):
        _record("before")  # as the owner

        with acting_as(runtime_role):
            _record("one")
            # Above 100 events a batch goes in with COPY.
            audit_events_record_many(
                actor=None,
                events=[EventSpec(AuditAction.OUTBOX_DEAD, None, data={"note": f"batch {n}"}) for n in range(150)],
            )
            assert verify_chain().ok

        assert AuditEvent.objects.count() == 152

    def test_a_state_change_runs_with_its_history_outbox_and_audit_event(self, runtime_role, admin_user):
        with acting_as(runtime_role):
            identity = identities.identity_create(actor=admin_user, kind="human", name="Rowan Runtime")

        assert AuditEvent.objects.for_target(identity).exists()
        assert identity.history.count() == 1


class TestTheRuntimeRoleCannotChangeTheTrail:
    @pytest.mark.parametrize(
        ("sql", "refusal"),
        [
            ("UPDATE audit_auditevent SET actor_label = 'mallory'", "permission denied for table audit_auditevent"),
            ("DELETE FROM audit_auditevent", "permission denied for table audit_auditevent"),
            ("TRUNCATE audit_auditevent", "permission denied for table audit_auditevent"),
            ("ALTER TABLE audit_auditevent DISABLE TRIGGER ALL", "must be owner of table audit_auditevent"),
            ("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete", "must be owner of table"),
            ("DROP TRIGGER audit_event_no_update_delete ON audit_auditevent", "must be owner of relation"),
            ("SET session_replication_role = replica", "permission denied to set parameter"),
        ],
        ids=["update", "delete", "truncate", "disable-triggers", "disable-one-trigger", "drop-trigger", "replica"],
    )
    def test_the_database_refuses(self, runtime_role, sql, refusal):
        _record("kept")

        with acting_as(runtime_role):
            error = _refused(sql)

        assert error.sqlstate == "42501"  # insufficient_privilege
        assert refusal in str(error)
        # Refused for want of a privilege, not by the append-only trigger: disabling it would not help.
        assert "append-only" not in str(error)
        assert AuditEvent.objects.get().actor_label != "mallory"

    def test_it_still_reads_and_writes_the_other_tables(self, runtime_role, admin_user):
        with acting_as(runtime_role):
            _execute("UPDATE auth_user SET first_name = 'Ada' WHERE id = %s", [admin_user.pk])
            _execute("DELETE FROM django_session")
            assert _execute("SELECT count(*) FROM django_migrations")[0][0] > 0
            assert "permission denied" in str(_refused("DELETE FROM django_migrations"))


class TestGrantRuntimeRole:
    def _privileges(self, role: str, table: str) -> set[str]:
        kinds = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
        return {kind for kind in kinds if _execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, kind])[0][0]}

    def test_the_audit_trail_gets_select_and_insert_the_rest_read_and_write(self, runtime_role):
        assert self._privileges(runtime_role, "audit_auditevent") == {"SELECT", "INSERT"}
        assert self._privileges(runtime_role, "jit_accessrequest") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
        assert self._privileges(runtime_role, "django_migrations") == {"SELECT"}

    def test_running_it_again_narrows_rights_granted_by_hand(self, runtime_role):
        _execute(f'GRANT ALL ON audit_auditevent TO "{runtime_role}"')

        call_command("grant_runtime_role", runtime_role)
        call_command("grant_runtime_role", runtime_role)

        assert self._privileges(runtime_role, "audit_auditevent") == {"SELECT", "INSERT"}

    def test_tables_created_later_by_the_owner_are_covered(self, runtime_role):
        _execute("CREATE TABLE portal_later (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)")

        with acting_as(runtime_role):
            _execute("INSERT INTO portal_later (note) VALUES ('x')")
            _execute("UPDATE portal_later SET note = 'y'")
            assert _execute("SELECT note FROM portal_later") == [("y",)]

    def test_it_refuses_a_superuser_and_an_unknown_role(self, db):
        superuser = _new_role()
        _execute(f'ALTER ROLE "{superuser}" SUPERUSER')

        with pytest.raises(CommandError, match="superuser"):
            call_command("grant_runtime_role", superuser)
        with pytest.raises(CommandError, match="no role"):
            call_command("grant_runtime_role", "portal_nobody_here")

    def test_it_refuses_the_owner_itself_and_a_member_of_it(self, db):
        owner, member = _new_role(), _new_role()
        _execute(f'GRANT "{owner}" TO "{member}"')

        with acting_as(owner):
            for role in (owner, member):
                with pytest.raises(CommandError, match="the owner"):
                    call_command("grant_runtime_role", role)


class TestDeployCheck:
    def test_it_is_a_deploy_check(self):
        assert deploy_check in registry.registry.get_checks(include_deployment_checks=True)
        assert deploy_check not in registry.registry.get_checks(include_deployment_checks=False)

    def test_it_warns_for_a_superuser(self, db):
        assert _deploy_warnings() == ["audit.W001"]

    def test_it_warns_for_the_owner_of_the_audit_table(self, db):
        owner = _new_role()
        _execute(f'ALTER TABLE audit_auditevent OWNER TO "{owner}"')

        with acting_as(owner):
            assert _deploy_warnings() == ["audit.W002"]

    def test_it_warns_for_a_role_that_may_update_or_delete_events(self, runtime_role):
        _execute(f'GRANT UPDATE ON audit_auditevent TO "{runtime_role}"')

        with acting_as(runtime_role):
            assert _deploy_warnings() == ["audit.W003"]

    def test_it_is_silent_for_the_runtime_role(self, runtime_role):
        with acting_as(runtime_role):
            assert _deploy_warnings() == []

    def test_an_unreachable_database_is_reported_not_raised(self, db, monkeypatch):
        from django.db import connections

        unreachable = connections.create_connection("default")
        unreachable.settings_dict = {**unreachable.settings_dict, "HOST": "127.0.0.1", "PORT": "1"}
        monkeypatch.setattr("audit.checks.connections", {"default": unreachable})

        assert _deploy_warnings() == ["audit.I001"]


@pytest.mark.django_db(transaction=True)
def test_migrate_runs_as_the_owner_then_grants_the_runtime_role():
    """With MIGRATE_DATABASE_URL set, `migrate` connects as that role; DATABASE_URL's role gets its grants."""
    runtime = _new_role(login=True)  # committed: a connection of its own logs in as it
    settings_dict = connection.settings_dict
    owner_user = settings_dict["USER"]
    owner_url = f"postgres://{owner_user}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
    migrated_as = []

    def note_user(**kwargs):
        migrated_as.append(_execute("SELECT current_user")[0][0])

    pre_migrate.connect(note_user, dispatch_uid="note_user")
    connection.close()
    settings_dict["USER"] = runtime  # the portal's DATABASE_URL names the runtime role
    try:
        with override_settings(MIGRATE_DATABASE_URL=owner_url):
            call_command("migrate", verbosity=0)
        assert _execute("SELECT current_user")[0][0] == runtime  # back to the runtime role afterwards
        assert "permission denied" in str(_refused("UPDATE audit_auditevent SET actor_label = 'mallory'"))
        _record("appended by the runtime role")
    finally:
        pre_migrate.disconnect(dispatch_uid="note_user")
        connection.close()
        settings_dict["USER"] = owner_user
        _execute(f'DROP OWNED BY "{runtime}"')
        _execute(f'DROP ROLE "{runtime}"')

    assert set(migrated_as) == {owner_user}
