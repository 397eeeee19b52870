from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain; exits non-zero at the first broken link. Prints the head "
        "to keep outside the database: given back with --expect, it also catches events cut from the end."
    )

    def add_arguments(self, parser):
        parser.add_argument("--expect", metavar="SEQ:HASH", help="a head printed by an earlier run")

    def handle(self, *args, expect=None, **options):
        anchor = None
        if expect:
            seq, _, digest = expect.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise CommandError("--expect takes SEQ:HASH as printed by an earlier run.")
            anchor = (int(seq), digest.lower())
        report = verify_chain(expect=anchor)
        if not report.ok:
            raise CommandError(
                f"Audit chain broken at event #{report.broken_at}: {report.reason} "
                f"({report.checked} events verified before it)."
            )
        seq, digest = report.head
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.checked} events verified."))
        self.stdout.write(f"Head: {seq}:{digest}  (keep it; check later with --expect {seq}:{digest})")
