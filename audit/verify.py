"""Walk the audit chain and report the first broken link."""

from dataclasses import dataclass

from .models import GENESIS_HASH, AuditEvent
from .services import compute_hash


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""
    head: tuple[int, str] = (0, GENESIS_HASH)

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(*, chunk_size: int = 5000, expect: tuple[int, str] | None = None) -> ChainReport:
    """Recompute every hash in chain order: an edit breaks a hash, a deletion a link or the numbering.

    A chain cut short at its end is still a valid chain; `expect`, a head (seq, hash) recorded
    outside the database earlier, catches that: the event must still be there, unchanged.
    """
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size):
        if expect is not None and event.seq == expect[0] and event.hash != expect[1]:
            return ChainReport(checked, event.seq, "not the event recorded as this head earlier")
        if event.seq != expected_seq:
            return ChainReport(checked, event.seq, f"event #{expected_seq} is missing (next is #{event.seq})")
        if event.prev_hash != prev_hash:
            return ChainReport(checked, event.seq, "previous-hash link does not match the event before it")
        if compute_hash(event) != event.hash:
            return ChainReport(checked, event.seq, "content does not match its hash (the row was edited)")
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    head = (expected_seq - 1, prev_hash)
    if expect is not None and head[0] < expect[0]:
        return ChainReport(
            checked, expect[0], f"the trail ends at #{head[0]}: events up to #{expect[0]} were removed", head
        )
    return ChainReport(checked, head=head)
