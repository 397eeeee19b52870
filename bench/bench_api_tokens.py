"""Time token authentication on the API against the same calls signed in by session, in the same run.

    psql -h 127.0.0.1 -U postgres -c "create database portal_tokenbench"     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_tokenbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_api_tokens.py --identities 100000

The database is dropped, created again and migrated (only a name starting with portal_tokenbench).
Seeded: --identities machine identities (each owned by one person), of which `agent` holds 20 grants,
and --tokens tokens spread over them (the prefix lookup works on a realistic table). Then, through
Django's test client (the whole middleware and DRF stack), --calls GETs of `/api/v1/grants/`:

session        a person holding 20 grants, signed in by session (force_login): the floor;
person token   the same person's bearer token (prefix lookup, HMAC, checks, scope, last use kept once a minute);
machine token  an agent holding 20 grants, by its own token (it reads its own grants);

interleaved in rounds of 50 so all see the same machine load. Medians per call, the ratio to the
session's, and the overhead per call in ms (the difference of the medians).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("PORTAL_DATA_DIR", "/tmp/bench_api_tokens_data")
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "0"

import django

django.setup()

from django.conf import settings  # noqa: E402

settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

DB_PREFIX = "portal_tokenbench"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def recreate_database() -> None:
    import psycopg

    db = settings.DATABASES["default"]
    name = db["NAME"]
    if not name.startswith(DB_PREFIX):
        sys.exit(f"refusing to drop {name!r}: point DATABASE_URL at a database named {DB_PREFIX}...")
    for alias in connections:
        connections[alias].close()
    with psycopg.connect(host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"], dbname="postgres",
                         autocommit=True) as admin:  # fmt: skip
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


def seed(identities: int, tokens: int):
    from governance.models import ApiToken, Entitlement, Grant, Identity, System
    from governance.services.credentials import api_token_create, token_digest

    bulk_user = get_user_model().objects.create(username="bulk-owner", email="bulk@example.org")
    bulk_owner = Identity.objects.create(name="Bulk owner", kind="human", email=bulk_user.email, user=bulk_user)
    machines = [
        Identity(name=f"svc-{i:06d}", kind="service_account", owner=bulk_owner, may_self_request=True)
        for i in range(identities)
    ]
    Identity.objects.bulk_create(machines, batch_size=5000)
    user = get_user_model().objects.create(username="holder", email="holder@example.org")
    holder = Identity.objects.create(name="Holder", kind="human", email=user.email, user=user)
    agent = Identity.objects.create(name="agent", kind="ai_agent", owner=holder, may_self_request=True)
    system = System.objects.create(name="Bench", owner=bulk_owner)
    entitlements = Entitlement.objects.bulk_create(
        Entitlement(system=system, name=f"role-{i}", owner=bulk_owner, risk_tier="low") for i in range(20)
    )
    now = timezone.now()
    Grant.objects.bulk_create(
        Grant(identity=who, entitlement=e, status="active", granted_at=now, reason="bench")
        for who in (holder, agent)
        for e in entitlements
    )
    expires = now + timezone.timedelta(days=30)
    ApiToken.objects.bulk_create(
        (
            ApiToken(identity=machines[i % identities], name="bulk", prefix=f"{i:012x}",
                     digest=token_digest(f"gp_{i:012x}_x"), scopes=["grants:read"], expires_at=expires)
            for i in range(tokens)
        ),
        batch_size=5000,
    )  # fmt: skip
    person = api_token_create(actor=None, identity_id=holder.pk, name="bench", scopes=["grants:read"])
    machine = api_token_create(actor=None, identity_id=agent.pk, name="bench", scopes=["grants:read"])
    return user, person.secret, machine.secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    recreate_database()
    started = time.perf_counter()
    user, person_secret, machine_secret = seed(args.identities, args.tokens)
    log(f"seeded {args.identities} identities and {args.tokens} tokens in {time.perf_counter() - started:.1f} s")

    clients = {"session": APIClient(), "person token": APIClient(), "machine token": APIClient()}
    clients["session"].force_login(user)
    clients["person token"].credentials(HTTP_AUTHORIZATION=f"Bearer {person_secret}")
    clients["machine token"].credentials(HTTP_AUTHORIZATION=f"Bearer {machine_secret}")
    for client in clients.values():  # warm every path
        for _ in range(20):
            assert client.get("/api/v1/grants/").status_code == 200
    times = {name: [] for name in clients}
    for _ in range(args.calls // 50):
        for name, client in clients.items():
            for _ in range(50):
                t = time.perf_counter()
                response = client.get("/api/v1/grants/")
                times[name].append(time.perf_counter() - t)
                assert response.status_code == 200, response.content[:200]
    floor = statistics.median(times["session"])
    for name, measured in times.items():
        median = statistics.median(measured)
        log(
            f"{name:14s} median {median * 1000:6.2f} ms over {len(measured)} calls: "
            f"{median / floor:.2f}x the session, {(median - floor) * 1000:+.2f} ms per call"
        )


if __name__ == "__main__":
    main()
