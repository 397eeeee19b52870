"""Demo logins, one per role, for `make run`. Never used outside the dev command."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from governance.roles import Role

DEMO_PASSWORD = "portal-demo"

DEMO_USERS = [
    # username, first name, last name, roles
    ("requester", "Riya", "Requester", [Role.REQUESTER]),
    ("approver", "Alex", "Approver", [Role.REQUESTER, Role.APPROVER]),
    ("owner", "Olu", "Owner", [Role.REQUESTER, Role.OWNER, Role.APPROVER]),
    ("auditor", "Ada", "Auditor", [Role.AUDITOR]),
    ("admin", "Sam", "Admin", [Role.ADMIN, Role.REQUESTER, Role.APPROVER, Role.OWNER]),
]


def create_demo_users() -> list[tuple[str, list[str]]]:
    """Create (or reset) the demo logins; idempotent."""
    User = get_user_model()
    created = []
    for username, first, last, roles in DEMO_USERS:
        user, _ = User.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last, "email": f"{username}@example.org"}
        )
        user.set_password(DEMO_PASSWORD)
        user.is_staff = user.is_superuser = Role.ADMIN in roles
        user.save()
        user.groups.set(Group.objects.filter(name__in=roles))
        created.append((username, [str(r) for r in roles]))
    return created
