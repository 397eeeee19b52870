"""The request path's rules that an imported grant must meet too: no grant to oneself, no blocked SoD pair.

A grants file records access that exists on a target, but an admin who could import a standing grant
for themself, or the second half of a pair a "block" rule forbids, would have a door around every
approval. Such rows are refused with the reason; the access is then requested, or imported by
another admin.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from ..choices import GrantStatus, SodAction
from ..models import Grant, Identity, SodRule


def identities_not_for(user) -> frozenset[int]:
    """The identities `user` may not grant access to by import: themself and the machines they own or back."""
    me = getattr(user, "identity", None) if getattr(user, "is_authenticated", False) else None
    if me is None:
        return frozenset()
    owned = Identity.objects.filter(Q(owner=me) | Q(backup_owner=me)).values_list("pk", flat=True)
    return frozenset({me.pk, *owned})


SELF_GRANT = (
    "you cannot import a grant for yourself or for an identity you own: request it, "
    "or ask another admin to import this row"
)


@dataclass(frozen=True)
class BlockRule:
    name: str
    entitlements: frozenset[int]


class BlockRules:
    """The active SoD "block" rules, read once per import, and what each identity holds of their entitlements."""

    def __init__(self) -> None:
        self.by_entitlement: dict[int, list[BlockRule]] = defaultdict(list)
        for rule in SodRule.objects.filter(is_active=True, action=SodAction.BLOCK).prefetch_related("entitlements"):
            members = frozenset(e.pk for e in rule.entitlements.all())
            for pk in members:
                self.by_entitlement[pk].append(BlockRule(rule.name, members))

    @property
    def entitlements(self) -> set[int]:
        return set(self.by_entitlement)

    def broken_by(self, entitlement_id: int, held: set[int]) -> BlockRule | None:
        """The rule that holding `entitlement_id` beside `held` would break, if any."""
        for rule in self.by_entitlement.get(entitlement_id, ()):
            others = rule.entitlements - {entitlement_id}
            if others and others <= held:
                return rule
        return None

    def held(self, pairs: Iterable[tuple[int, int]]) -> dict[int, set[int]]:
        """Of (identity, entitlement) pairs, the entitlements under a rule that each identity holds."""
        result: dict[int, set[int]] = defaultdict(set)
        for identity_id, entitlement_id in pairs:
            if entitlement_id in self.by_entitlement:
                result[identity_id].add(entitlement_id)
        return result

    def held_now(self, identity_ids: Iterable[int]) -> dict[int, set[int]]:
        """What these identities hold live of the rules' entitlements, read now (under the write phase's locks)."""
        pairs = Grant.objects.filter(
            status__in=GrantStatus.live(), identity_id__in=list(identity_ids), entitlement_id__in=self.entitlements
        ).values_list("identity_id", "entitlement_id")
        return self.held(pairs)


def sod_message(rule: BlockRule) -> str:
    return f"separation of duties ({rule.name}): the identity may not hold this entitlement with what it holds"
