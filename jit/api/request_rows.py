"""The request API's list pages, read as values and written as `AccessRequestSerializer` writes them.

A page of 50 requests built 50 requests, their requester, beneficiary and entitlement, their stages and
approvals as model instances, then walked DRF's fields for each (some 1,400 look-ups): ~8 ms of the
page's ~13 ms of CPU, on the list that agents poll. Here the page is read as values (three queries, as
before) and its JSON written directly. The serializer stays the one definition of the fields, their
order and the schema; a single request (retrieve, the actions' answers) still goes through it, and
tests/jit/test_api_request_rows.py compares the two on every field.
"""

from collections import defaultdict
from datetime import datetime, tzinfo
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from governance.querysets import one_of
from jit.models import AccessRequest, Approval, ApprovalStage

from .serializers import AccessRequestSerializer

# What a request's row reads, beside its own columns: the names the serializer follows.
NAMED = {
    "requester": "requester__username",
    "beneficiary_name": "beneficiary__name",
    "entitlement_name": "entitlement__name",
}
# Foreign keys the serializer gives as ids.
KEYS = {"requester_identity", "beneficiary", "entitlement", "renewal_of", "grant"}
TIMES = {"start_at", "activation_deadline", "decided_at", "created_at"}


def _values_of(fields: list[str]) -> list[str]:
    """The `values()` names of a request's fields (what the serializer reads for each)."""
    names = []
    for name in fields:
        if name in NAMED:
            names.append(NAMED[name])
        elif name in KEYS:
            names.append(f"{name}_id")
        elif name == "duration_seconds":
            names.append("duration")
        elif name != "stages":
            names.append(name)
    return names


REQUEST_VALUES = ["id", *_values_of(AccessRequestSerializer.Meta.fields)]


def request_values(queryset: QuerySet[AccessRequest]) -> QuerySet:
    """A list's requests as the rows `request_rows` writes (dicts: the cursor pagination reads their id)."""
    return queryset.values(*dict.fromkeys(REQUEST_VALUES))


def request_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's requests as the serializer gives them, their stages and approvals read in two queries."""
    zone = timezone.get_current_timezone()
    stages = _stages_of([row["id"] for row in rows], zone)
    fields = AccessRequestSerializer.Meta.fields
    return [_request(row, fields, stages.get(row["id"], []), zone) for row in rows]


def _request(row: dict[str, Any], fields: list[str], stages: list[dict], zone: tzinfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        if name in NAMED:
            out[name] = row[NAMED[name]]
        elif name in KEYS:
            out[name] = row[f"{name}_id"]
        elif name in TIMES:
            out[name] = api_time(row[name], zone)
        elif name == "duration_seconds":
            out[name] = int(row["duration"].total_seconds())
        elif name == "stages":
            out[name] = stages
        else:
            out[name] = row[name]
    return out


def _stages_of(request_ids: list[int], zone: tzinfo) -> dict[int, list[dict]]:
    """Each request's stages in their order (ApprovalStage's), each with its approvals (Approval's order),
    their keys in `StageSerializer`'s and `ApprovalSerializer`'s order."""
    if not request_ids:
        return {}
    stage_rows = list(
        ApprovalStage.objects.filter(one_of("request_id", request_ids))
        .order_by(*ApprovalStage._meta.ordering)
        .values("id", "request_id", "position", "approver_source", "group", "quorum", "reason", "status", "decided_at")
    )
    approvals: dict[int, list[dict]] = defaultdict(list)
    if stage_rows:
        for stage_id, approver, decision, comment, decided_at in (
            Approval.objects.filter(one_of("stage_id", [stage["id"] for stage in stage_rows]))
            .order_by(*Approval._meta.ordering)
            .values_list("stage_id", "approver__username", "decision", "comment", "decided_at")
        ):
            approvals[stage_id].append(
                {
                    "approver": approver,
                    "decision": decision,
                    "comment": comment,
                    "decided_at": api_time(decided_at, zone),
                }
            )
    stages: dict[int, list[dict]] = defaultdict(list)
    for stage in stage_rows:
        stages[stage["request_id"]].append(
            {
                "position": stage["position"],
                "approver_source": stage["approver_source"],
                "group": stage["group"],
                "quorum": stage["quorum"],
                "reason": stage["reason"],
                "status": stage["status"],
                "decided_at": api_time(stage["decided_at"], zone),
                "approvals": approvals.get(stage["id"], []),
            }
        )
    return stages


def api_time(value: datetime | None, zone: tzinfo) -> str | None:
    """A time as DRF's DateTimeField writes it (ISO 8601 in the current zone, "Z" for UTC)."""
    if not value:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
