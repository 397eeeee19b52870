"""Link a login to its identity provider account by hand, unlink it, or list the links."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from governance.errors import DomainError
from identity_sources.models import SsoLink
from identity_sources.sso.services import sso_link_remove, sso_link_set


class Command(BaseCommand):
    help = "Single sign-on links: link USERNAME SUBJECT [--issuer URL] | unlink USERNAME [--issuer URL] | list."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["link", "unlink", "list"])
        parser.add_argument("username", nargs="?", default="")
        parser.add_argument("subject", nargs="?", default="", help="the account's `sub` claim at the provider")
        parser.add_argument("--issuer", default="", help="default: OIDC_ISSUER")

    def handle(self, *args, action: str, username: str, subject: str, issuer: str, **options) -> None:
        if action == "list":
            for link in SsoLink.objects.select_related("user").order_by("user__username", "issuer"):
                self.stdout.write(
                    f"{link.user.get_username()}\t{link.issuer}\t{link.subject}\t{link.last_login_at or 'never'}"
                )
            return
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No login named {username!r}.")
        try:
            if action == "link":
                link = sso_link_set(actor=None, user_id=user.pk, subject=subject, issuer=issuer)
                self.stdout.write(self.style.SUCCESS(f"{username} signs in as {link.subject} at {link.issuer}."))
            else:
                removed = sso_link_remove(actor=None, user_id=user.pk, issuer=issuer)
                self.stdout.write(self.style.SUCCESS(f"{removed} link(s) of {username} removed."))
        except DomainError as exc:
            raise CommandError(exc.message) from None
