"""An auditor's navigation shows what an auditor uses, the inventory export among it, and the export
names who and what each key stands for (issue 16, auditor point 3)."""

import csv
import io

import pytest
from django.urls import reverse

from audit.services import Actor
from governance.imports.exports import csv_chunks
from governance.services.imports import import_apply
from portal.navigation import nav_for
from tests.factories.governance import GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

ONE_S_OWN_WORK = {"My requests", "My grants", "Delegations", "My identities", "My reviews", "Request access"}


def labels(user) -> set[str]:
    return {item.label for item in nav_for(user)}


def test_an_auditor_sees_what_an_auditor_uses_and_the_export(client):
    # given an auditor and nothing else
    auditor = PersonFactory(name="Ada Auditor", user__roles=["auditor"]).user

    # then the navigation holds the trail, the export and the inventory, not work of their own
    shown = labels(auditor)
    assert {"Audit trail", "Inventory export", "Catalogue", "Identities", "Systems", "Findings", "Campaigns"} <= shown
    assert not shown & ONE_S_OWN_WORK
    client.force_login(auditor)
    page = client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("governance:export")}"' in page
    assert client.get(reverse("governance:export")).status_code == 200


def test_an_auditor_who_also_requests_keeps_their_own_work_and_others_get_no_export():
    both = PersonFactory(user__roles=["auditor", "requester"]).user
    assert {"My requests", "My grants", "Inventory export"} <= labels(both)
    requester = PersonFactory(user__roles=["requester"]).user
    assert "My requests" in labels(requester) and "Inventory export" not in labels(requester)


def rows(entity: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(csv_chunks(entity)))))


def test_the_csv_export_names_each_reference_and_still_imports_as_a_no_op():
    # given a machine owned by Olu holding a grant on Ledger's db-read
    olu = PersonFactory(name="Olu Owner", external_id="olu")
    bot = MachineFactory(name="billing-bot", owner=olu, external_id="bot")
    system = SystemFactory(name="Ledger", owner=olu, external_id="ledger")
    GrantFactory(identity=bot, entitlement__name="db-read", entitlement__system=system, entitlement__owner=olu)

    # when the inventory is exported as CSV
    (grant,) = rows("grants")
    identities = {row["external_id"]: row for row in rows("identities")}

    # then each key is followed by the name it stands for
    assert (grant["identity_name"], grant["system_name"], grant["entitlement_name"]) == (
        "billing-bot",
        "Ledger",
        "db-read",
    )
    assert identities["bot"]["owner_external_id"] == "olu" and identities["bot"]["owner_name"] == "Olu Owner"
    header = "".join(csv_chunks("grants")).splitlines()[0].split(",")
    assert header[header.index("identity_external_id") + 1] == "identity_name"

    # and importing the export back changes nothing (the importer ignores the names)
    for entity in ("identities", "systems", "entitlements", "grants"):
        content = "".join(csv_chunks(entity)).encode()
        result = import_apply(actor=Actor.system(), entity=entity, fmt="csv", content=content, file_name="e.csv")
        assert result.created == result.updated == 0, entity
