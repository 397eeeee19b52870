"""Row locks, in one documented order, for every state change.

The audit chain no longer serialises state changes (it is taken only at commit), so row locks are
what keeps two changes of the same thing apart. Every service takes them through these helpers and
in this order, so that two transactions never wait on each other in a circle:

    identity  ->  system  ->  entitlement  ->  request  ->  grant

Within one kind, rows are locked in primary-key order. Locks are `FOR NO KEY UPDATE`: no service
changes a key, so rows that merely point at a locked one (a new grant, a request, an import row
checking its foreign key) never wait for it. Where a service must lock something earlier in the order
after something later (rare), it releases nothing and relies on `state_change` retrying the whole
transaction on a deadlock: safe, because side effects live in the outbox.
"""

from collections.abc import Iterable
from typing import TypeVar

from django.db import connection, models

from .errors import ValidationFailed

M = TypeVar("M", bound=models.Model)


def lock(model: type[M], pk: int) -> M:
    """Fetch one row FOR NO KEY UPDATE, or fail with a clear error."""
    try:
        return model.objects.select_for_update(no_key=True).get(pk=pk)
    except model.DoesNotExist:
        raise ValidationFailed(f"{model._meta.verbose_name.capitalize()} {pk} does not exist.") from None


def lock_many(queryset: models.QuerySet, pks: Iterable[int] | None = None) -> list:
    """Lock the rows of `queryset` (only those in `pks`, if given) in primary-key order; return them."""
    if pks is not None:
        queryset = queryset.filter(pk__in=list(pks))
    return list(queryset.select_for_update(of=("self",), no_key=True).order_by("pk"))


def lock_ids(model: type[models.Model], pks: Iterable[int]) -> list[int]:
    """Lock rows by id without loading them (cheap, for large sets); return the ids that exist."""
    ids = sorted(set(pks))
    if not ids:
        return []
    return list(
        model.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk").values_list("pk", flat=True)
    )


def _system_of(entitlement_id: int) -> int:
    from .models import Entitlement

    system_id = Entitlement.objects.filter(pk=entitlement_id).values_list("system_id", flat=True).first()
    if system_id is None:
        raise ValidationFailed(f"Entitlement {entitlement_id} does not exist.")
    return system_id


def share_ids(model: type[models.Model], pks: Iterable[int]) -> None:
    """Hold rows FOR SHARE: many transactions may hold them at once; an exclusive lock waits for all.

    For rows a change depends on but does not change (the entitlement a grant is issued for): grants
    of one entitlement go side by side, and its retirement waits for them, then sees their grants.
    """
    ids = sorted(set(pks))
    if ids and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {model._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                [ids],
            )


def share_entitlement(entitlement_id: int, *, system_id: int | None = None) -> None:
    """Hold an entitlement's system, then the entitlement, shared (the order `lock_entitlement` takes).

    Submitting, deciding and issuing never queue behind one another for the same entitlement, only
    behind an edit or a retirement of it. Pass `system_id` when the caller read it already.
    """
    from .models import Entitlement, System

    share_ids(System, [system_id if system_id is not None else _system_of(entitlement_id)])
    share_ids(Entitlement, [entitlement_id])


def hold_entitlement(entitlement_id: int, *related: str):
    """`share_entitlement`, then the entitlement read again with its system (and `related`)."""
    from .models import Entitlement

    share_entitlement(entitlement_id)
    return Entitlement.objects.select_related("system", *related).get(pk=entitlement_id)


def lock_entitlement(entitlement_id: int):
    """Hold an entitlement's system shared, then lock the entitlement (returned with its system).

    For editing or retiring it: the system is held, not locked, so that editing one entitlement holds
    back no decision on another of the same system, while `system_retire` (which locks the system)
    still waits for it, in the same order.
    """
    from .models import Entitlement, System

    share_ids(System, [_system_of(entitlement_id)])
    return (
        Entitlement.objects.select_for_update(of=("self",), no_key=True).select_related("system").get(pk=entitlement_id)
    )
