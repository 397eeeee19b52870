"""`manage.py import_inventory identities people.csv [--format csv|json] [--dry-run]`."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.services import Actor
from governance.imports.specs import ENTITIES, FORMATS
from governance.services.imports import ImportRejected, import_apply


class Command(BaseCommand):
    help = "Import identities, systems, entitlements or grants from CSV or JSON (all rows or none), as the system."

    def add_arguments(self, parser):
        parser.add_argument("entity", choices=ENTITIES)
        parser.add_argument("path", help="The file to import.")
        parser.add_argument("--format", choices=FORMATS, help="Default: from the file's extension (csv).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count; write nothing.")

    def handle(self, *args, entity: str, path: str, format: str | None, dry_run: bool, **options):
        file = Path(path)
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        fmt = format or ("json" if file.suffix.lower() == ".json" else "csv")

        started = time.monotonic()

        def progress(phase: str, done: int, total: int) -> None:
            self.stdout.write(f"{phase} {done:,}/{total:,} rows ({time.monotonic() - started:.1f} s)")
            self.stdout.flush()

        try:
            result = import_apply(
                actor=Actor.system(),
                entity=entity,
                fmt=fmt,
                content=content,
                file_name=file.name,
                dry_run=dry_run,
                progress=progress,
            )
        except ImportRejected as exc:
            for error in exc.row_errors:
                self.stderr.write(str(error))
            raise CommandError(exc.message) from None
        verb = "Would import" if dry_run else "Imported"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {result.rows:,} {entity} rows from {file.name}: "
                f"{result.created:,} created, {result.updated:,} updated, {result.unchanged:,} unchanged "
                f"in {time.monotonic() - started:.1f} s."
            )
        )
