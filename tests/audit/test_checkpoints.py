"""Signed checkpoints: the chain's head kept outside the database, and everything that checks against it."""

import base64
import json
import logging
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.checkpoints import (
    CheckpointRefused,
    DirectoryCheckpointStore,
    checkpoint_health,
    checkpoint_record,
    key_id,
    private_key_load,
    private_key_text,
    public_key_load,
    public_key_text,
)
from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import audit_event_record, compute_hash
from audit.tasks import audit_checkpoint_task
from tests.audit.tampering import tamper as _tamper

pytestmark = pytest.mark.django_db


def _record(n: int) -> AuditEvent:
    return audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={"n": n})


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store_dir(tmp_path, settings, key) -> Path:
    """A production-like setup: a configured signing key, no development key, the store in tmp_path."""
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = private_key_text(key)
    settings.AUDIT_CHECKPOINT_VERIFY_KEYS = []
    settings.AUDIT_CHECKPOINT_DEV_KEY_FILE = None
    return settings.AUDIT_CHECKPOINT_DIR


@pytest.fixture
def three_events():
    return [_record(n) for n in range(3)]


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.json") if not p.name.startswith("."))


def _rewrite(path: Path, change) -> None:
    os.chmod(path, 0o644)  # the store leaves them read-only
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


#
# Recording
#


def test_a_checkpoint_signs_the_head_into_a_read_only_file_outside_the_database(store_dir, three_events, key):
    checkpoint = checkpoint_record()

    (path,) = _files(store_dir)
    assert path.relative_to(store_dir).as_posix() == checkpoint.name
    assert not os.stat(path).st_mode & 0o222  # nobody writes it again
    stored = json.loads(path.read_text())
    assert (stored["seq"], stored["hash"], stored["key_id"]) == (3, three_events[-1].hash, key_id(key.public_key()))
    # the signature holds for the public key alone
    key.public_key().verify(base64.b64decode(stored["signature"]), checkpoint.signed_text())
    assert abs(checkpoint.signed_at - timezone.now()) < timedelta(minutes=1)  # the database's time


def test_an_empty_trail_has_nothing_to_sign(store_dir):
    assert checkpoint_record() is None
    assert _files(store_dir) == []


def test_the_task_writes_one_each_run_even_when_the_head_did_not_move(store_dir, three_events):
    first = audit_checkpoint_task()
    second = audit_checkpoint_task()
    assert first["seq"] == second["seq"] == 3
    assert len(_files(store_dir)) == 2  # the newest one's age shows that signing still works


def test_without_a_signing_key_production_logs_an_error_and_health_shows_it(
    store_dir, settings, three_events, client, admin_user, caplog
):
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = ""
    with caplog.at_level(logging.ERROR, logger="audit.tasks"):
        result = audit_checkpoint_task()
    assert "AUDIT_CHECKPOINT_SIGNING_KEY is not set" in result["error"]
    assert "AUDIT_CHECKPOINT_SIGNING_KEY is not set" in caplog.text
    assert _files(store_dir) == []
    # the web keeps serving, and says what is wrong
    client.force_login(admin_user)
    health = client.get(reverse("health")).json()["checks"]["audit_checkpoints"]
    assert health == {"ok": False, "detail": health["detail"]} and "AUDIT_CHECKPOINT_SIGNING_KEY" in health["detail"]
    assert client.get(reverse("audit:event_list")).status_code == 200


def test_development_makes_a_key_once_and_keeps_it(store_dir, settings, tmp_path, three_events):
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = ""
    settings.AUDIT_CHECKPOINT_DEV_KEY_FILE = tmp_path / "dev-key.pem"
    first = checkpoint_record()
    second = checkpoint_record()
    assert settings.AUDIT_CHECKPOINT_DEV_KEY_FILE.exists()
    assert first.key_id == second.key_id
    call_command("verify_audit")  # its public key is known without being listed


def test_keys_load_from_pem_or_base64(key):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = key_id(key.public_key())
    assert key_id(private_key_load(pem.decode()).public_key()) == expected
    assert key_id(private_key_load(pem.decode().replace("\n", "\\n")).public_key()) == expected  # one env line
    assert key_id(private_key_load(private_key_text(key)).public_key()) == expected
    assert key_id(public_key_load(public_pem.decode())) == expected
    assert key_id(public_key_load(public_key_text(key.public_key()))) == expected


def test_keygen_prints_a_key_pair_the_settings_take(capsys):
    call_command("audit_checkpoint_keygen")
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if not line.startswith("#"))
    private = private_key_load(lines["AUDIT_CHECKPOINT_SIGNING_KEY"])
    assert key_id(public_key_load(lines["AUDIT_CHECKPOINT_VERIFY_KEYS"])) == key_id(private.public_key())


def test_the_beat_runs_it_every_interval(settings):
    from portal.celery import BEAT_SCHEDULE, app

    assert (
        app.conf.beat_schedule["audit.tasks.audit_checkpoint_task"]
        is BEAT_SCHEDULE["audit.tasks.audit_checkpoint_task"]
    )
    assert BEAT_SCHEDULE["audit.tasks.audit_checkpoint_task"]["schedule"] == 300.0
    assert settings.AUDIT_CHECKPOINT_MAX_AGE == 3 * settings.AUDIT_CHECKPOINT_INTERVAL


#
# verify_audit
#


def test_verify_checks_the_trail_against_every_checkpoint(store_dir, three_events, capsys):
    checkpoint_record()
    _record(3)
    checkpoint_record()
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "4 events verified" in out and "Checked against 2 signed checkpoints" in out


def test_verify_warns_when_there_is_no_checkpoint(store_dir, three_events, capsys):
    call_command("verify_audit")
    assert "No signed checkpoints" in capsys.readouterr().out


def test_an_edited_event_is_reported_as_the_first_bad_event(store_dir, three_events):
    checkpoint_record()
    _tamper("UPDATE audit_auditevent SET data = %s WHERE seq = 2", ['{"n": 99}'])
    with pytest.raises(CommandError, match=r"broken at event #2: content does not match"):
        call_command("verify_audit")


def test_a_rewritten_chain_passes_alone_but_not_against_the_checkpoint(store_dir, three_events, capsys):
    checkpoint = checkpoint_record()
    # an attacker edits event 2 and recomputes every hash after it: the chain is whole again
    second, third = AuditEvent.objects.get(seq=2), AuditEvent.objects.get(seq=3)
    second.actor_label = "mallory"
    second_hash = compute_hash(second)
    third.prev_hash = second_hash
    third_hash = compute_hash(third)
    _tamper("UPDATE audit_auditevent SET actor_label = 'mallory', hash = %s WHERE seq = 2", [second_hash])
    _tamper("UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE seq = 3", [second_hash, third_hash])
    call_command("verify_audit", no_checkpoints=True)  # alone, a rewritten chain looks whole

    with pytest.raises(CommandError) as caught:
        call_command("verify_audit")
    assert f"broken at event #3: not the event checkpoint {checkpoint.name} recorded" in str(caught.value)


def test_a_truncated_trail_is_caught_by_the_checkpoint_above_it(store_dir, three_events):
    checkpoint = checkpoint_record()
    _tamper("DELETE FROM audit_auditevent WHERE seq >= 2", [])
    call_command("verify_audit", no_checkpoints=True)  # alone, a shorter chain looks whole
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit")
    message = str(caught.value)
    assert "the trail ends at #1: events up to #3 were removed" in message
    assert checkpoint.name in message


def test_nothing_is_signed_over_a_trail_that_no_longer_matches_the_newest_checkpoint(store_dir, three_events, caplog):
    checkpoint_record()
    _tamper("DELETE FROM audit_auditevent WHERE seq = 3", [])
    with pytest.raises(CheckpointRefused, match="event #3 it recorded is gone"):
        checkpoint_record()
    with caplog.at_level(logging.ERROR, logger="audit.tasks"):
        assert "not signing" in audit_checkpoint_task()["error"]
    assert len(_files(store_dir)) == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c.update(hash="f" * 64), "bad signature"),
        (lambda c: c.update(seq=c["seq"] - 1), "bad signature"),
        (lambda c: c.update(at="2000-01-01T00:00:00.000000+00:00"), "bad signature"),
        (lambda c: c.update(signature=base64.b64encode(b"x" * 64).decode()), "bad signature"),
        (lambda c: c.update(key_id="0" * 16), "unknown key"),
        (lambda c: c.pop("signature"), "unexpected fields"),
    ],
    ids=["changed-hash", "changed-seq", "changed-time", "bad-signature", "other-key-id", "no-signature"],
)
def test_a_tampered_checkpoint_file_fails_verify_naming_it(store_dir, three_events, change, problem):
    checkpoint_record()
    _record(3)
    checkpoint_record()
    first, _second = _files(store_dir)
    _rewrite(first, change)
    name = first.relative_to(store_dir).as_posix()
    with pytest.raises(CommandError, match=rf"Audit checkpoint {name} is bad: .*{problem}"):
        call_command("verify_audit")


def test_a_file_that_is_not_a_checkpoint_fails_verify_naming_it(store_dir, three_events):
    checkpoint_record()
    (path,) = _files(store_dir)
    os.chmod(path, 0o644)
    path.write_text("not json")
    with pytest.raises(CommandError, match=rf"{path.name} is bad: unreadable: not JSON"):
        call_command("verify_audit")


def test_verify_can_check_against_a_copy_of_the_store(store_dir, three_events, tmp_path):
    checkpoint_record()
    copy = tmp_path / "copy"
    shutil.copytree(store_dir, copy)  # an auditor's own copy
    shutil.rmtree(store_dir)  # and the store wiped
    _tamper("DELETE FROM audit_auditevent WHERE seq = 3", [])
    call_command("verify_audit")  # nothing left in the store to check against
    with pytest.raises(CommandError, match="events up to #3 were removed"):
        call_command("verify_audit", checkpoint_dir=str(copy))


#
# Key rotation
#


def test_after_a_rotation_old_checkpoints_verify_with_the_old_public_key_listed(store_dir, settings, three_events, key):
    old = checkpoint_record()
    new_key = Ed25519PrivateKey.generate()
    # the rotation, as the README says: list the old public key, then switch the signing key
    settings.AUDIT_CHECKPOINT_VERIFY_KEYS = [public_key_text(new_key.public_key()), public_key_text(key.public_key())]
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = private_key_text(new_key)
    _record(3)
    new = checkpoint_record()
    assert old.key_id != new.key_id
    call_command("verify_audit")

    # without the old public key, its checkpoints no longer verify
    settings.AUDIT_CHECKPOINT_VERIFY_KEYS = [public_key_text(new_key.public_key())]
    with pytest.raises(
        CommandError, match=rf"Audit checkpoint {old.name} is bad: signed with unknown key {old.key_id}"
    ):
        call_command("verify_audit")
    # an auditor may bring it along instead
    call_command("verify_audit", verify_key=[public_key_text(key.public_key())])


def test_a_checkpoint_of_an_unknown_key_fails(store_dir, settings, three_events):
    stranger = Ed25519PrivateKey.generate()
    checkpoint_record(key=stranger)  # e.g. planted by whoever holds some other key
    with pytest.raises(CommandError, match="signed with unknown key"):
        call_command("verify_audit")


def test_signing_refuses_to_follow_a_checkpoint_it_cannot_verify(store_dir, settings, three_events):
    checkpoint_record()
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = private_key_text(Ed25519PrivateKey.generate())  # old key not listed
    with pytest.raises(CheckpointRefused, match="unknown key"):
        checkpoint_record()


#
# /health/ and the audit page
#


@pytest.fixture
def other_checks_pass(monkeypatch):
    from portal import health

    for name in ("database", "broker", "expiry_sweep"):
        monkeypatch.setitem(health.HEALTH_CHECKS, name, lambda: (True, ""))


def _checkpoint_health(client) -> tuple[int, dict]:
    response = client.get(reverse("health"))
    return response.status_code, response.json()["checks"]["audit_checkpoints"]


def test_health_turns_red_when_the_newest_checkpoint_is_stale(
    store_dir, three_events, client, admin_user, other_checks_pass
):
    client.force_login(admin_user)
    checkpoint = checkpoint_record()
    status, check = _checkpoint_health(client)
    assert status == 200 and check["ok"]
    assert re.fullmatch(
        rf"newest checkpoint #{checkpoint.seq} is \d s old, verified", check["detail"]
    )  # a slow machine

    with time_machine.travel(timezone.now() + timedelta(minutes=14), tick=False):
        assert _checkpoint_health(client)[0] == 200
    with time_machine.travel(timezone.now() + timedelta(minutes=16), tick=False):
        status, check = _checkpoint_health(client)
        assert status == 503 and not check["ok"]
        assert re.fullmatch(rf"newest checkpoint #{checkpoint.seq} is 9\d\d s old \(limit 900 s\)", check["detail"])
        # a load balancer's readiness does not depend on it
        assert client.get(reverse("health_ready")).status_code == 200


def test_health_needs_no_checkpoint_for_an_empty_trail(store_dir, client, other_checks_pass):
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        assert client.get(reverse("health")).status_code == 200
        assert checkpoint_health() == (True, "the audit trail is empty")


def test_health_gives_the_first_checkpoint_time_then_asks_for_it(store_dir, three_events, client, other_checks_pass):
    assert client.get(reverse("health")).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(minutes=16), tick=False):
        assert client.get(reverse("health")).status_code == 503
        ok, detail = checkpoint_health()
    assert not ok and detail.startswith("no checkpoint yet; the trail's first event is 9")


def test_health_turns_red_when_the_newest_checkpoint_no_longer_matches(
    store_dir, three_events, client, admin_user, other_checks_pass
):
    client.force_login(admin_user)
    checkpoint = checkpoint_record()
    _tamper("DELETE FROM audit_auditevent WHERE seq >= 2", [])
    status, check = _checkpoint_health(client)
    assert status == 503 and f"event #{checkpoint.seq} it recorded is gone" in check["detail"]


def test_the_audit_page_shows_the_newest_checkpoint_its_age_and_that_it_verified(
    store_dir, three_events, client, auditor
):
    client.force_login(auditor)
    assert "No signed checkpoint yet" in client.get(reverse("audit:event_list")).content.decode()

    checkpoint = checkpoint_record()
    with time_machine.travel(timezone.now() + timedelta(minutes=3, seconds=5), tick=False):
        page = client.get(reverse("audit:event_list")).content.decode()
    assert f"Checkpoint <strong>#{checkpoint.seq}</strong> signed" in page
    assert "3 min ago</time>" in page and "<strong>verified</strong>" in page


def test_the_audit_page_says_when_the_newest_checkpoint_does_not_verify(store_dir, three_events, client, auditor):
    client.force_login(auditor)
    checkpoint = checkpoint_record()
    _tamper("UPDATE audit_auditevent SET hash = %s WHERE seq = %s", ["e" * 64, checkpoint.seq])
    page = client.get(reverse("audit:event_list")).content.decode()
    assert f"not verified: event #{checkpoint.seq} no longer has the hash it recorded" in page


def test_the_directory_store_lists_oldest_first_and_finds_the_newest(tmp_path):
    store = DirectoryCheckpointStore(tmp_path)
    for name in ["2026/01/02/b.json", "2025/12/31/z.json", "2026/01/02/a.json", "2026/01/10/a.json"]:
        store.append(name, name.encode())
    (tmp_path / "2026" / "01" / "10" / ".tmp-partial.json").write_text("half")  # a write in progress
    assert [name for name, _ in store.entries()] == [
        "2025/12/31/z.json",
        "2026/01/02/a.json",
        "2026/01/02/b.json",
        "2026/01/10/a.json",
    ]
    assert store.latest() == ("2026/01/10/a.json", b"2026/01/10/a.json")
    with pytest.raises(FileExistsError):
        store.append("2026/01/02/a.json", b"again")
