"""Signed checkpoints of the audit chain, kept outside the database.

The chain proves an edit or a deletion only against a head kept where whoever can write the
database cannot reach it. A beat task signs the head (seq, hash, database time) with an Ed25519
key every few minutes and appends it to a store outside the database; `verify_audit` checks the
whole trail against every checkpoint, the audit page and /health/ check the newest one.

Verification needs only public keys (AUDIT_CHECKPOINT_VERIFY_KEYS): a rotated-out key stays listed
so the checkpoints it signed keep verifying. Each checkpoint names its key by `key_id`, a short
fingerprint of the public key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import AuditEvent

logger = logging.getLogger(__name__)

# The signed text names what it is, so a signature over it can never be taken for anything else.
CHECKPOINT_KIND = "portal.audit.checkpoint"
CHECKPOINT_VERSION = 1
_FIELDS = frozenset({"kind", "v", "seq", "hash", "at", "key_id", "signature"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class CheckpointError(Exception):
    """Checkpoints cannot be written or read as configured; the message says what to fix."""


class CheckpointKeyMissing(CheckpointError):
    """No signing key: production must be given one (development makes its own)."""


class CheckpointKeyInvalid(CheckpointError):
    """A configured key that is not an Ed25519 key in a form we read."""


class CheckpointInvalid(CheckpointError):
    """A stored checkpoint that does not parse (edited, truncated, or not a checkpoint at all)."""


class CheckpointRefused(CheckpointError):
    """The newest checkpoint no longer matches the trail: signing the altered trail would bless it."""


#
# Keys
#


def _key_material(text: str) -> bytes:
    """PEM as is; anything else is base64 of a raw 32-byte key or of its DER form."""
    text = text.strip().replace("\\n", "\n")  # a PEM squeezed onto one line of an environment file
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointKeyInvalid("not PEM and not base64") from exc


# How each kind of key is read from PEM, from its raw 32 bytes, or from DER; and what it must be.
_KEY_FORMS = {
    "private": (
        functools.partial(serialization.load_pem_private_key, password=None),
        Ed25519PrivateKey.from_private_bytes,
        functools.partial(serialization.load_der_private_key, password=None),
        Ed25519PrivateKey,
    ),
    "public": (
        serialization.load_pem_public_key,
        Ed25519PublicKey.from_public_bytes,
        serialization.load_der_public_key,
        Ed25519PublicKey,
    ),
}


def _key_load(text: str, kind: str):
    from_pem, from_raw, from_der, expected = _KEY_FORMS[kind]
    material = _key_material(text)
    try:
        if material.startswith(b"-----BEGIN"):
            key = from_pem(material)
        elif len(material) == 32:
            key = from_raw(material)
        else:
            key = from_der(material)
    except (ValueError, TypeError) as exc:
        raise CheckpointKeyInvalid(f"not an Ed25519 {kind} key ({exc})") from exc
    if not isinstance(key, expected):
        raise CheckpointKeyInvalid(f"an Ed25519 key is needed, not {type(key).__name__}")
    return key


def private_key_load(text: str) -> Ed25519PrivateKey:
    return _key_load(text, "private")


def public_key_load(text: str) -> Ed25519PublicKey:
    return _key_load(text, "public")


def private_key_text(key: Ed25519PrivateKey) -> str:
    """The form AUDIT_CHECKPOINT_SIGNING_KEY takes: base64 of the raw 32 bytes."""
    return base64.b64encode(key.private_bytes_raw()).decode()


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form an AUDIT_CHECKPOINT_VERIFY_KEYS entry takes: base64 of the raw 32 bytes."""
    return base64.b64encode(key.public_bytes_raw()).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint, so a checkpoint names the key that signed it and rotation keeps working."""
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()[:16]


def _dev_key_file() -> Path | None:
    path = getattr(settings, "AUDIT_CHECKPOINT_DEV_KEY_FILE", None)
    return Path(path) if path else None


def _dev_signing_key(*, create: bool) -> Ed25519PrivateKey | None:
    """Development and tests only: a key kept in DATA_DIR, made on first use (never in production)."""
    path = _dev_key_file()
    if path is None:
        return None
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never replaces a key another process made a moment ago
        finally:
            os.unlink(tmp)
        logger.warning("Audit checkpoints: made a development signing key at %s", path)
    return private_key_load(path.read_text())


def signing_key() -> Ed25519PrivateKey:
    """The configured signing key; in development and tests one kept in DATA_DIR when none is set."""
    text = settings.AUDIT_CHECKPOINT_SIGNING_KEY
    if text:
        try:
            return private_key_load(text)
        except CheckpointKeyInvalid as exc:
            raise CheckpointKeyInvalid(f"AUDIT_CHECKPOINT_SIGNING_KEY is {exc}") from exc
    key = _dev_signing_key(create=True)
    if key is None:
        raise CheckpointKeyMissing(
            "AUDIT_CHECKPOINT_SIGNING_KEY is not set: no checkpoint is signed (manage.py audit_checkpoint_keygen)"
        )
    return key


def verify_keys(extra: list[str] | tuple[str, ...] = ()) -> dict[str, Ed25519PublicKey]:
    """Every public key a checkpoint may be signed with, by key id: the listed ones (old keys stay
    listed after a rotation) and the current signing key's own, so a single-key setup needs no list."""
    keys: dict[str, Ed25519PublicKey] = {}
    for number, text in enumerate([*settings.AUDIT_CHECKPOINT_VERIFY_KEYS, *extra], start=1):
        try:
            key = public_key_load(text)
        except CheckpointKeyInvalid as exc:
            raise CheckpointKeyInvalid(f"verify key {number} (AUDIT_CHECKPOINT_VERIFY_KEYS) is {exc}") from exc
        keys[key_id(key)] = key
    own = signing_key() if settings.AUDIT_CHECKPOINT_SIGNING_KEY else _dev_signing_key(create=False)
    if own is not None:
        keys.setdefault(key_id(own.public_key()), own.public_key())
    return keys


def keys_problem() -> str:
    """What stops this node from signing or verifying checkpoints ("" when nothing does)."""
    try:
        keys = verify_keys()
    except CheckpointError as exc:
        return str(exc)
    if not keys and _dev_key_file() is None:
        return "AUDIT_CHECKPOINT_SIGNING_KEY and AUDIT_CHECKPOINT_VERIFY_KEYS are not set"
    return ""


#
# A checkpoint
#


def _canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class Checkpoint:
    """A chain head (seq, hash) at a database time, signed by the key `key_id` names."""

    seq: int
    hash: str
    at: str  # ISO 8601 UTC, exactly as signed
    key_id: str
    signature: str  # base64
    name: str = ""  # where the store keeps it

    def __str__(self) -> str:
        return self.name or f"#{self.seq}@{self.at}"

    @property
    def signed_at(self) -> datetime:
        return datetime.fromisoformat(self.at)

    def signed_text(self) -> bytes:
        return _canonical(
            {
                "kind": CHECKPOINT_KIND,
                "v": CHECKPOINT_VERSION,
                "seq": self.seq,
                "hash": self.hash,
                "at": self.at,
                "key_id": self.key_id,
            }
        )

    def to_bytes(self) -> bytes:
        payload = json.loads(self.signed_text()) | {"signature": self.signature}
        return json.dumps(payload, sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "") -> Checkpoint:
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointInvalid("not JSON") from exc
        if not isinstance(payload, dict) or set(payload) != _FIELDS:
            raise CheckpointInvalid("not a checkpoint (unexpected fields)")
        if payload["kind"] != CHECKPOINT_KIND or payload["v"] != CHECKPOINT_VERSION:
            raise CheckpointInvalid("not a checkpoint of this kind or version")
        seq, digest, at = payload["seq"], payload["hash"], payload["at"]
        if type(seq) is not int or seq < 1:
            raise CheckpointInvalid("seq is not a positive integer")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise CheckpointInvalid("hash is not 64 hex digits")
        if not isinstance(payload["key_id"], str) or not _KEY_ID.fullmatch(payload["key_id"]):
            raise CheckpointInvalid("key_id is not a key fingerprint")
        if not isinstance(payload["signature"], str):
            raise CheckpointInvalid("signature is not text")
        try:
            moment = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise CheckpointInvalid("at is not a time with its zone")
        return cls(seq, digest, at, payload["key_id"], payload["signature"], name)


def checkpoint_sign(*, seq: int, digest: str, at: datetime, key: Ed25519PrivateKey) -> Checkpoint:
    unsigned = Checkpoint(
        seq=seq,
        hash=digest,
        at=at.astimezone(UTC).isoformat(timespec="microseconds"),
        key_id=key_id(key.public_key()),
        signature="",
    )
    signature = base64.b64encode(key.sign(unsigned.signed_text())).decode()
    return Checkpoint(unsigned.seq, unsigned.hash, unsigned.at, unsigned.key_id, signature)


def checkpoint_signature_problem(checkpoint: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> str:
    """Why the signature does not hold ("" when it does)."""
    key = keys.get(checkpoint.key_id)
    if key is None:
        return f"signed with unknown key {checkpoint.key_id} (not in AUDIT_CHECKPOINT_VERIFY_KEYS)"
    try:
        key.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.signed_text())
    except (InvalidSignature, binascii.Error, ValueError):
        return "bad signature (the checkpoint was altered or not signed by its key)"
    return ""


def checkpoint_event_problem(checkpoint: Checkpoint) -> str:
    """Whether the trail still holds the event the checkpoint recorded: one indexed lookup."""
    stored = AuditEvent.objects.filter(seq=checkpoint.seq).values_list("hash", flat=True).first()
    if stored is None:
        return f"event #{checkpoint.seq} it recorded is gone from the trail"
    if stored != checkpoint.hash:
        return f"event #{checkpoint.seq} no longer has the hash it recorded"
    return ""


#
# Stores
#


class CheckpointStore:
    """Where checkpoints live, outside the database: append-only, never rewritten.

    A store deals in names and bytes only. Names sort oldest first; `latest` must be cheap (the
    audit page and /health/ call it). Subclass it for other storage (AUDIT_CHECKPOINT_STORE).
    """

    def append(self, name: str, content: bytes) -> None:
        raise NotImplementedError

    def entries(self) -> Iterator[tuple[str, bytes]]:
        """Every checkpoint, oldest first."""
        raise NotImplementedError

    def latest(self) -> tuple[str, bytes] | None:
        raise NotImplementedError


class DirectoryCheckpointStore(CheckpointStore):
    """One read-only file per checkpoint under YYYY/MM/DD/, written to a temporary name and moved in.

    Point AUDIT_CHECKPOINT_DIR at write-once storage (a WORM volume, or a bucket with Object Lock
    through a mount that can rename): each checkpoint is one new file, nothing is ever changed.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory if directory is not None else settings.AUDIT_CHECKPOINT_DIR)

    def append(self, name: str, content: bytes) -> None:
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            raise FileExistsError(f"checkpoint {name} exists already")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # Read-only once in place (on a SnapLock-style WORM volume, this is what commits the file).
        with contextlib.suppress(OSError):
            os.chmod(path, 0o444)
        _fsync_directory(path.parent)

    @staticmethod
    def _sorted(directory: Path, *, files: bool, reverse: bool = False) -> list[Path]:
        try:
            children = [
                child
                for child in directory.iterdir()
                if not child.name.startswith(".")
                and (child.is_file() if files else child.is_dir())
                and (child.suffix == ".json" or not files)
            ]
        except FileNotFoundError:
            return []
        return sorted(children, key=lambda p: p.name, reverse=reverse)

    def _files(self, *, reverse: bool) -> Iterator[Path]:
        for year in self._sorted(self.directory, files=False, reverse=reverse):
            for month in self._sorted(year, files=False, reverse=reverse):
                for day in self._sorted(month, files=False, reverse=reverse):
                    yield from self._sorted(day, files=True, reverse=reverse)

    def entries(self) -> Iterator[tuple[str, bytes]]:
        for path in self._files(reverse=False):
            yield path.relative_to(self.directory).as_posix(), path.read_bytes()

    def latest(self) -> tuple[str, bytes] | None:
        for path in self._files(reverse=True):
            return path.relative_to(self.directory).as_posix(), path.read_bytes()
        return None


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def checkpoint_store() -> CheckpointStore:
    return import_string(settings.AUDIT_CHECKPOINT_STORE)()


def checkpoint_name(checkpoint: Checkpoint) -> str:
    """YYYY/MM/DD/<time>-<seq>.json: names sort by time, and a day holds a few hundred files."""
    at = checkpoint.signed_at.astimezone(UTC)
    return f"{at:%Y/%m/%d}/{at:%Y%m%dT%H%M%S.%fZ}-{checkpoint.seq:012d}.json"


@dataclass(frozen=True)
class UnreadableCheckpoint:
    """A stored file that is no checkpoint: named, so `verify_audit` can point at it."""

    name: str
    problem: str


def checkpoints_read(store: CheckpointStore) -> Iterator[Checkpoint | UnreadableCheckpoint]:
    """Every stored checkpoint, oldest first; one that does not parse comes as an UnreadableCheckpoint."""
    for name, content in store.entries():
        try:
            yield Checkpoint.from_bytes(content, name=name)
        except CheckpointInvalid as exc:
            yield UnreadableCheckpoint(name, str(exc))


#
# Services
#


def checkpoint_check(checkpoint: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> str:
    """The cheap check of one checkpoint: its signature, and the event it recorded (no chain walk)."""
    return checkpoint_signature_problem(checkpoint, keys) or checkpoint_event_problem(checkpoint)


def checkpoint_record(
    *, store: CheckpointStore | None = None, key: Ed25519PrivateKey | None = None
) -> Checkpoint | None:
    """Sign the chain's head and append it to the store; None while the trail is empty.

    A checkpoint is written on every run, even when the head has not moved: the newest one's age
    then shows that signing still works (/health/). Nothing is signed while the newest checkpoint
    no longer matches the trail, so an altered trail is never blessed by a fresh signature.
    """
    store = store if store is not None else checkpoint_store()
    key = key if key is not None else signing_key()
    head = AuditEvent.objects.order_by("-seq").annotate(db_now=Now()).values_list("seq", "hash", "db_now").first()
    if head is None:
        return None
    previous = store.latest()
    if previous is not None:
        name, content = previous
        try:
            problem = checkpoint_check(Checkpoint.from_bytes(content, name=name), verify_keys() | _own(key))
        except CheckpointInvalid as exc:
            problem = str(exc)
        if problem:
            raise CheckpointRefused(f"not signing: the newest checkpoint {name} does not verify: {problem}")
    seq, digest, at = head
    signed = checkpoint_sign(seq=seq, digest=digest, at=at, key=key)
    name = checkpoint_name(signed)
    # Two runs at the same instant sign the same text into the same name (Ed25519 is deterministic).
    with contextlib.suppress(FileExistsError):
        store.append(name, signed.to_bytes())
    return Checkpoint(signed.seq, signed.hash, signed.at, signed.key_id, signed.signature, name)


def _own(key: Ed25519PrivateKey) -> dict[str, Ed25519PublicKey]:
    return {key_id(key.public_key()): key.public_key()}


@dataclass(frozen=True)
class CheckpointStatus:
    """The newest checkpoint and whether it verified, for the audit page and /health/."""

    checkpoint: Checkpoint | None
    problem: str = ""  # why it does not verify, or why none could be read

    @property
    def ok(self) -> bool:
        return self.checkpoint is not None and not self.problem

    @property
    def age(self) -> timedelta | None:
        return None if self.checkpoint is None else timezone.now() - self.checkpoint.signed_at


def checkpoint_status(*, store: CheckpointStore | None = None) -> CheckpointStatus:
    """The newest checkpoint, its signature and its event checked (cheap enough for every page view)."""
    try:
        store = store if store is not None else checkpoint_store()
        latest = store.latest()
    except Exception as exc:  # a store that cannot be read must not take the page down
        logger.exception("Audit checkpoints: the store cannot be read")
        return CheckpointStatus(None, f"the checkpoint store cannot be read ({type(exc).__name__})")
    if latest is None:
        return CheckpointStatus(None)
    name, content = latest
    try:
        checkpoint = Checkpoint.from_bytes(content, name=name)
    except CheckpointInvalid as exc:
        return CheckpointStatus(None, f"the newest checkpoint {name} is unreadable: {exc}")
    try:
        keys = verify_keys()
    except CheckpointError as exc:
        return CheckpointStatus(checkpoint, str(exc))
    return CheckpointStatus(checkpoint, checkpoint_check(checkpoint, keys))


def checkpoint_health() -> tuple[bool, str]:
    """Red when checkpoints cannot be verified here, the newest does not verify, or it is too old.

    An empty trail needs no checkpoint; a trail younger than the limit may not have its first yet.
    """
    limit = settings.AUDIT_CHECKPOINT_MAX_AGE
    problem = keys_problem()
    if problem:
        return False, problem
    first = AuditEvent.objects.order_by("seq").values_list("occurred_at", flat=True).first()
    if first is None:
        return True, "the audit trail is empty"
    status = checkpoint_status()
    now = timezone.now()
    if status.checkpoint is None:
        if status.problem:
            return False, status.problem
        waited = int((now - first).total_seconds())
        if now - first > limit:
            return False, f"no checkpoint yet; the trail's first event is {waited} s old"
        return True, f"no checkpoint yet; the trail's first event is {waited} s old"
    checkpoint, age = status.checkpoint, int(status.age.total_seconds())
    if status.problem:
        return False, f"checkpoint #{checkpoint.seq} ({checkpoint.name}): {status.problem}"
    if status.age > limit:
        return False, f"newest checkpoint #{checkpoint.seq} is {age} s old (limit {int(limit.total_seconds())} s)"
    return True, f"newest checkpoint #{checkpoint.seq} is {age} s old, verified"
