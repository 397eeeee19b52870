"""Encrypt every connector secret again with the newest of CONNECTOR_SECRET_KEYS (README: "Connector secrets")."""

from django.core.management.base import BaseCommand

from governance.connectors.secrets import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt connector secrets with the first key of CONNECTOR_SECRET_KEYS; then the old key can go."

    def handle(self, *args, **options) -> None:
        rotated = secrets_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the connector secrets of {rotated} system(s)."))
