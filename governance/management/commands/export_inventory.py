"""`manage.py export_inventory identities --format csv -o out.csv` (standard output without -o)."""

from django.core.management.base import BaseCommand

from governance.imports.exports import csv_chunks, json_chunks
from governance.imports.specs import ENTITIES, FORMATS


class Command(BaseCommand):
    help = "Export identities, systems, entitlements or active grants in the import's columns (CSV or JSON)."

    def add_arguments(self, parser):
        parser.add_argument("entity", choices=ENTITIES)
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("-o", "--output", help="File to write (default: standard output).")

    def handle(self, *args, entity: str, format: str, output: str | None, **options):
        chunks = json_chunks(entity) if format == "json" else csv_chunks(entity)
        framing = 2 if format == "json" else 1  # "[" and "]", or the header line
        if not output:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        written = 0
        with open(output, "w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
                written += 1
        self.stderr.write(f"Wrote {max(written - framing, 0):,} {entity} to {output}.")
