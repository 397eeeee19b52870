from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import CheckpointError, DirectoryCheckpointStore
from audit.verify import verify_chain, verify_trail


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain against every signed checkpoint in the store; exits non-zero at "
        "the first broken link or bad checkpoint. Prints the head: given back with --expect, it also catches "
        "events cut from the end."
    )

    def add_arguments(self, parser):
        parser.add_argument("--expect", metavar="SEQ:HASH", help="a head printed by an earlier run")
        parser.add_argument(
            "--checkpoint-dir",
            metavar="DIR",
            help="check against the checkpoints in this directory (a copy of the store) instead of the store",
        )
        parser.add_argument(
            "--verify-key",
            metavar="PUBLIC_KEY",
            action="append",
            default=[],
            help="also trust this Ed25519 public key (base64 or PEM); repeat for more",
        )
        parser.add_argument(
            "--no-checkpoints", action="store_true", help="walk the chain only, ignoring the checkpoint store"
        )

    def handle(self, *args, expect=None, checkpoint_dir=None, verify_key=(), no_checkpoints=False, **options):
        anchor = None
        if expect:
            seq, _, digest = expect.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise CommandError("--expect takes SEQ:HASH as printed by an earlier run.")
            anchor = (int(seq), digest.lower())
        if no_checkpoints:
            report = verify_chain(expect=anchor)
        else:
            store = DirectoryCheckpointStore(checkpoint_dir) if checkpoint_dir else None
            try:
                report = verify_trail(expect=anchor, store=store, extra_keys=verify_key)
            except CheckpointError as exc:
                raise CommandError(f"Audit checkpoints cannot be checked: {exc}") from exc
        if not report.ok:
            if report.broken_at is None:
                raise CommandError(f"Audit checkpoint {report.checkpoint} is bad: {report.reason}.")
            raise CommandError(
                f"Audit chain broken at event #{report.broken_at}: {report.reason} "
                f"({report.checked} events verified before it)."
            )
        seq, digest = report.head
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.checked} events verified."))
        if not no_checkpoints:
            if report.checkpoints:
                self.stdout.write(f"Checked against {report.checkpoints} signed checkpoints.")
            else:
                self.stdout.write(
                    self.style.WARNING("No signed checkpoints in the store: events cut from the end go unnoticed.")
                )
        self.stdout.write(f"Head: {seq}:{digest}  (keep it; check later with --expect {seq}:{digest})")
