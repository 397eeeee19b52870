from django.core.management.base import BaseCommand

from portal.demo import DEMO_PASSWORD, create_demo_users


class Command(BaseCommand):
    help = "Create demo data and one demo login per role (idempotent)."

    def handle(self, *args, **options):
        users = create_demo_users()
        self.stdout.write(self.style.SUCCESS(f"Demo logins (password: {DEMO_PASSWORD}):"))
        for username, roles in users:
            self.stdout.write(f"  {username:<10} {', '.join(roles)}")
