from django.core.management.base import BaseCommand

from governance.roles import roles_bootstrap


class Command(BaseCommand):
    help = "Create the role groups and give them their permissions (idempotent)."

    def handle(self, *args, **options):
        roles_bootstrap()
        self.stdout.write(self.style.SUCCESS("Roles ready."))
