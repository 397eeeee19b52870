"""Who a person field may pick: the live search behind the people combobox (issue 16, owner item 3)."""

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from . import policies
from .choices import IdentityKind, IdentityStatus
from .models import Identity
from .selectors import identities_matching

PEOPLE_SHOWN = 10
MIN_SEARCH, MAX_SEARCH = 2, 100  # characters: one letter matches nearly everyone; longer is not a name


def can_pick_people(user) -> bool:
    """Whoever fills a person field somewhere (an owner, a manager, a delegate): anyone who may change
    something and is either an admin or a person in the inventory. Auditors read and pick nobody."""
    if not getattr(user, "is_authenticated", False) or policies.is_read_only(user):
        return False
    return policies.is_admin(user) or policies.identity_of(user) is not None


def people_matching(text: str, *, signs_in: bool = False, limit: int = PEOPLE_SHOWN) -> QuerySet[Identity]:
    """Active people whose name, email, team (`identities_matching`, trigram-indexed) or login contains
    `text`, best first: a login, email or name that is the text, then those starting with it. One query.

    Two sets united, not one OR: an OR reaching across the join to the login can use no index, while
    each set here is read through its trigram index (migration 0016), as `entitlements_matching` does.
    """
    people = Identity.objects.filter(kind=IdentityKind.HUMAN, status=IdentityStatus.ACTIVE)
    if signs_in:
        people = people.filter(user__isnull=False)
    by_fields = identities_matching(people, text).order_by().values("pk")
    by_login = people.filter(user__username__icontains=text).order_by().values("pk")
    rank = Case(
        When(Q(user__username__iexact=text) | Q(email__iexact=text) | Q(name__iexact=text), then=Value(0)),
        When(Q(user__username__istartswith=text) | Q(name__istartswith=text), then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return (
        Identity.objects.filter(pk__in=by_fields.union(by_login))
        .select_related("user")
        .only("pk", "name", "email", "team", "user__username")
        .annotate(rank=rank)
        .order_by("rank", "name", "pk")[:limit]
    )
