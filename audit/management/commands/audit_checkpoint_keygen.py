from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand

from audit.checkpoints import key_id, private_key_text, public_key_text


class Command(BaseCommand):
    help = (
        "Make a new Ed25519 key pair for signing audit checkpoints and print it as settings. Keep the private "
        "key secret (AUDIT_CHECKPOINT_SIGNING_KEY); add the public key to AUDIT_CHECKPOINT_VERIFY_KEYS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pem", action="store_true", help="print both keys as PEM instead of base64")

    def handle(self, *args, pem=False, **options):
        key = Ed25519PrivateKey.generate()
        public = key.public_key()
        if pem:
            private_text = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            public_text = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
            self.stdout.write(f"# key id {key_id(public)}\n# private (AUDIT_CHECKPOINT_SIGNING_KEY):\n{private_text}")
            self.stdout.write(f"# public (an AUDIT_CHECKPOINT_VERIFY_KEYS entry):\n{public_text}")
            return
        self.stdout.write(f"# key id {key_id(public)}")
        self.stdout.write(f"AUDIT_CHECKPOINT_SIGNING_KEY={private_key_text(key)}")
        self.stdout.write("# rotating? keep the old public keys: AUDIT_CHECKPOINT_VERIFY_KEYS=<new>,<old>")
        self.stdout.write(f"AUDIT_CHECKPOINT_VERIFY_KEYS={public_key_text(public)}")
