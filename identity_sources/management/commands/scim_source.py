"""Manage SCIM sources: create one (its token shown once), replace its token, revoke it, list them."""

from django.core.management.base import BaseCommand, CommandError

from governance.errors import DomainError
from identity_sources.models_scim import ScimSource
from identity_sources.scim.services import scim_source_create, scim_source_revoke, scim_source_rotate


class Command(BaseCommand):
    help = "SCIM provisioning sources: create NAME | rotate NAME | revoke NAME | list."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["create", "rotate", "revoke", "list"])
        parser.add_argument("name", nargs="?", default="")

    def _source(self, name: str) -> ScimSource:
        try:
            return ScimSource.objects.get(name=name.strip().lower())
        except ScimSource.DoesNotExist:
            raise CommandError(f"No SCIM source named {name!r}.") from None

    def handle(self, *args, action: str, name: str, **options) -> None:
        try:
            if action == "list":
                for source in ScimSource.objects.order_by("name"):
                    state = "revoked" if source.revoked_at else f"last used {source.last_used_at or 'never'}"
                    self.stdout.write(f"{source.name}\t{source.prefix}\t{state}")
                return
            if not name:
                raise CommandError("Name the source.")
            if action == "create":
                source, secret = scim_source_create(actor=None, name=name)
            elif action == "rotate":
                source, secret = scim_source_rotate(actor=None, source_id=self._source(name).pk)
            else:
                scim_source_revoke(actor=None, source_id=self._source(name).pk)
                self.stdout.write(self.style.SUCCESS(f"SCIM source {name} revoked: its token no longer works."))
                return
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"SCIM source {source.name}: its bearer token (shown once):"))
        self.stdout.write(secret)
        self.stdout.write("Give the identity provider the endpoint https://<portal host>/scim/v2/ and this token.")
