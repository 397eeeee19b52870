"""Walk the audit chain and report the first broken link, against every signed checkpoint."""

from collections.abc import Iterable
from dataclasses import dataclass, replace

from .checkpoints import (
    CheckpointStore,
    UnreadableCheckpoint,
    checkpoint_signature_problem,
    checkpoint_store,
    checkpoints_read,
    verify_keys,
)
from .models import GENESIS_HASH, AuditEvent
from .services import compute_hash


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""
    head: tuple[int, str] = (0, GENESIS_HASH)
    checkpoint: str = ""  # the checkpoint at fault, or that caught the fault
    checkpoints: int = 0  # signed checkpoints the trail was checked against

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Anchor:
    """A head recorded outside the database: a signed checkpoint (named) or one given with --expect."""

    seq: int
    hash: str
    checkpoint: str = ""


def verify_chain(
    *, chunk_size: int = 5000, expect: tuple[int, str] | None = None, anchors: Iterable[Anchor] = ()
) -> ChainReport:
    """Recompute every hash in chain order: an edit breaks a hash, a deletion a link or the numbering.

    A chain cut short at its end is still a valid chain; an anchor, a head (seq, hash) recorded
    outside the database earlier (`expect`, or the signed checkpoints), catches that: the event must
    still be there, unchanged. Anchors are checked in the order given, `expect` first.
    """
    ordered = [Anchor(*expect)] if expect is not None else []
    ordered += anchors
    by_seq: dict[int, list[Anchor]] = {}
    for anchor in ordered:
        by_seq.setdefault(anchor.seq, []).append(anchor)
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size):
        for anchor in by_seq.get(event.seq, ()):
            if event.hash != anchor.hash:
                if not anchor.checkpoint:
                    return ChainReport(checked, event.seq, "not the event recorded as this head earlier")
                return ChainReport(
                    checked,
                    event.seq,
                    f"not the event checkpoint {anchor.checkpoint} recorded (its hash differs)",
                    checkpoint=anchor.checkpoint,
                )
        if event.seq != expected_seq:
            return ChainReport(checked, event.seq, f"event #{expected_seq} is missing (next is #{event.seq})")
        if event.prev_hash != prev_hash:
            return ChainReport(checked, event.seq, "previous-hash link does not match the event before it")
        if compute_hash(event) != event.hash:
            return ChainReport(checked, event.seq, "content does not match its hash (the row was edited)")
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    head = (expected_seq - 1, prev_hash)
    beyond = next((anchor for anchor in ordered if anchor.seq > head[0]), None)
    if beyond is not None:
        reason = f"the trail ends at #{head[0]}: events up to #{beyond.seq} were removed"
        if beyond.checkpoint:
            reason += f" (checkpoint {beyond.checkpoint} recorded #{beyond.seq})"
        return ChainReport(checked, beyond.seq, reason, head, checkpoint=beyond.checkpoint)
    return ChainReport(checked, head=head)


def verify_trail(
    *,
    expect: tuple[int, str] | None = None,
    store: CheckpointStore | None = None,
    extra_keys: Iterable[str] = (),
    chunk_size: int = 5000,
) -> ChainReport:
    """The chain checked against every checkpoint in the store: each must carry a valid signature of a
    known key, its event must still be there with that hash, and the head must reach the newest one.

    Signatures are checked first (no database needed), then one walk checks every anchor on the way.
    """
    store = store if store is not None else checkpoint_store()
    keys = verify_keys(tuple(extra_keys))
    anchors = []
    for item in checkpoints_read(store):
        if isinstance(item, UnreadableCheckpoint):
            return ChainReport(0, reason=f"unreadable: {item.problem}", checkpoint=item.name)
        problem = checkpoint_signature_problem(item, keys)
        if problem:
            return ChainReport(0, reason=problem, checkpoint=item.name)
        anchors.append(Anchor(item.seq, item.hash, item.name))
    report = verify_chain(chunk_size=chunk_size, expect=expect, anchors=anchors)
    return replace(report, checkpoints=len(anchors))
