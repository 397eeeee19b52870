"""One approval-stage validator: the catalogue and the importer accept and refuse the same paths.

They used to disagree: the catalogue took `true` as a quorum, and an approver or group that was not
a string crashed one or the other. Both now call `governance.approval_stages.validate_approval_stages`.
"""

import json

import pytest

from audit.services import Actor
from governance import approval_stages
from governance.errors import ValidationFailed
from governance.models import Entitlement
from governance.services import catalogue
from governance.services.imports import ImportRejected, import_apply
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db
OWNER_ONE = {"approver": "entitlement_owner", "quorum": 1}
APPROVERS = "entitlement_owner, system_owner, beneficiary_owner, group"

ACCEPTED = [
    ([{"approver": "entitlement_owner"}], [OWNER_ONE]),
    (
        [{"approver": "group", "group": "approver", "quorum": 2}, {"approver": "system_owner", "note": "dropped"}],
        [{"approver": "group", "group": "approver", "quorum": 2}, {"approver": "system_owner", "quorum": 1}],
    ),
    (
        [{"approver": "beneficiary_owner", "quorum": 5, "group": "ignored"}],
        [{"approver": "beneficiary_owner", "quorum": 5}],
    ),
]
REFUSED = [
    ([], "At least one approval stage is required."),
    ([{"approver": "nobody"}], f"Stage 1: approver must be one of {APPROVERS}."),
    (["entitlement_owner"], f"Stage 1: approver must be one of {APPROVERS}."),
    ([{"approver": ["group"]}], f"Stage 1: approver must be one of {APPROVERS}."),
    ([{"quorum": 1}], f"Stage 1: approver must be one of {APPROVERS}."),
    ([{"approver": "system_owner", "quorum": True}], "Stage 1: quorum must be between 1 and 5."),
    ([{"approver": "system_owner", "quorum": 0}], "Stage 1: quorum must be between 1 and 5."),
    ([{"approver": "system_owner", "quorum": 6}], "Stage 1: quorum must be between 1 and 5."),
    ([{"approver": "system_owner", "quorum": 1.0}], "Stage 1: quorum must be between 1 and 5."),
    ([{"approver": "system_owner", "quorum": "2"}], "Stage 1: quorum must be between 1 and 5."),
    ([{"approver": "system_owner", "quorum": None}], "Stage 1: quorum must be between 1 and 5."),
    ([{"approver": "group", "group": "no-such-group"}], "Stage 1: group 'no-such-group' does not exist."),
    ([{"approver": "group"}], "Stage 1: group '' does not exist."),
    ([{"approver": "group", "group": ["approver"]}], "Stage 1: group ['approver'] does not exist."),
    ([OWNER_ONE, {"approver": "group", "group": "ghost"}], "Stage 2: group 'ghost' does not exist."),
    ([{"approver": "group", "group": "ghost"}, {"approver": "x"}], "Stage 1: group 'ghost' does not exist."),
]


def import_stages(stages, fmt: str = "csv"):
    """Import one entitlement with these approval stages; return what was stored."""
    PersonFactory(external_id="p-1")
    SystemFactory(external_id="sys-1")
    if fmt == "json":
        row = {
            "external_id": "ent-1",
            "system_external_id": "sys-1",
            "name": "reader",
            "owner_external_id": "p-1",
            "approval_stages": stages,
        }
        content = json.dumps([row]).encode()
    else:
        cell = json.dumps(stages).replace('"', '""')
        content = (
            f'external_id,system_external_id,name,owner_external_id,approval_stages\nent-1,sys-1,reader,p-1,"{cell}"\n'
        )
        content = content.encode()
    import_apply(actor=Actor.system(), entity="entitlements", fmt=fmt, content=content, file_name=f"e.{fmt}")
    return Entitlement.objects.get(external_id="ent-1").approval_stages


def test_the_catalogue_and_the_importer_share_one_validator():
    assert catalogue.validate_approval_stages is approval_stages.validate_approval_stages


@pytest.mark.parametrize(("stages", "clean"), ACCEPTED)
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_both_paths_accept_the_same_paths_and_store_them_the_same_way(stages, clean, fmt):
    assert catalogue.validate_approval_stages(stages) == clean
    assert import_stages(stages, fmt) == clean


@pytest.mark.parametrize(("stages", "message"), REFUSED)
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_both_paths_refuse_the_same_paths_with_the_same_reason(stages, message, fmt):
    # the catalogue (forms, API and services call it)
    with pytest.raises(ValidationFailed) as caught:
        catalogue.validate_approval_stages(stages)
    assert caught.value.message == message
    assert list(caught.value.field_errors) == ["approval_stages"]

    # the importer: the row named by line with the same reason, nothing written
    with pytest.raises(ImportRejected) as rejected:
        import_stages(stages, fmt)
    [error] = rejected.value.row_errors
    assert (error.key, error.message) == ("ent-1", f"approval_stages: {message}")
    assert not Entitlement.objects.exists()


def test_a_path_that_is_not_a_list_is_refused_by_both():
    with pytest.raises(ValidationFailed, match="At least one approval stage is required"):
        catalogue.validate_approval_stages({"approver": "system_owner"})
    with pytest.raises(ImportRejected) as rejected:
        import_stages({"approver": "system_owner"}, "csv")
    assert rejected.value.row_errors[0].message == "approval_stages must be a JSON list"


def test_an_empty_cell_keeps_the_default_path_on_import():
    PersonFactory(external_id="p-1")
    SystemFactory(external_id="sys-1")
    content = b"external_id,system_external_id,name,owner_external_id,approval_stages\nent-1,sys-1,reader,p-1,\n"
    import_apply(actor=Actor.system(), entity="entitlements", fmt="csv", content=content, file_name="e.csv")
    assert Entitlement.objects.get().approval_stages == [OWNER_ONE]


def test_the_catalogue_service_no_longer_takes_true_for_a_quorum():
    entitlement = EntitlementFactory()
    with pytest.raises(ValidationFailed, match="quorum must be between 1 and 5"):
        catalogue.entitlement_update(
            entitlement_id=entitlement.pk,
            actor=Actor.system(),
            changes={"approval_stages": [{"approver": "system_owner", "quorum": True}]},
        )
    entitlement.refresh_from_db()
    assert entitlement.approval_stages == [OWNER_ONE]


def test_the_validator_asks_for_groups_once_per_path_or_not_at_all(django_assert_num_queries):
    stages = [{"approver": "group", "group": "approver"}, {"approver": "group", "group": "approver", "quorum": 2}]
    with django_assert_num_queries(1):
        approval_stages.validate_approval_stages(stages)
    with django_assert_num_queries(0):
        approval_stages.validate_approval_stages(stages, groups={"approver"})
        approval_stages.validate_approval_stages([OWNER_ONE])
