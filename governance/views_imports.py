"""Inventory import (admins everything, owners what they own) and export (admins and auditors).

The upload page validates the whole file first: it shows what was created (with links to it),
updated and left unchanged, or a table of every bad row with its line number and all its errors
together, and then nothing was written. Each kind of file has a template to start from.
"""

from dataclasses import dataclass, field

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from audit.exports import streaming_csv_response
from audit.services import export_recorded

from . import policies
from .errors import DomainError
from .imports.exports import csv_rows, json_chunks
from .imports.specs import COLUMNS, ENTITIES, FORMATS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from .models import Entitlement, Grant, Identity, ImportJob, System
from .roles import Role, has_role
from .services.import_jobs import import_job_submit
from .services.imports import ImportRejected, import_apply

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
ERRORS_SHOWN = 500
ENTITY_CHOICES = [(entity, entity.capitalize()) for entity in ENTITIES]
FORMAT_CHOICES = [("csv", "CSV"), ("json", "JSON")]


class ImportForm(forms.Form):
    entity = forms.ChoiceField(label="What the file holds", choices=ENTITY_CHOICES)
    format = forms.ChoiceField(label="Format", choices=FORMAT_CHOICES, initial="csv")
    file = forms.FileField(label="File", help_text="UTF-8, keyed by external_id. All rows are imported, or none.")
    dry_run = forms.BooleanField(label="Only check the file (write nothing)", required=False)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
        return upload


def _can_export(user) -> bool:
    return has_role(user, Role.ADMIN, Role.AUDITOR)


IMPORT_REFUSED = "Only admins, and owners for what they own, may import the inventory."
# What each kind of file creates, and the page of one.
_CREATED = {
    "identities": (Identity, "governance:identity_detail"),
    "systems": (System, "governance:system_detail"),
    "entitlements": (Entitlement, "governance:entitlement_detail"),
    "grants": (Grant, "governance:grant_detail"),
}


def _created_links(result) -> list[tuple[str, str]]:
    """(name, URL) of what the import created, for its first keys (one query), linked to their pages."""
    result = result if isinstance(result, dict) else vars(result)
    keys = list(result.get("created_keys") or ())
    if result.get("dry_run") or not keys or result.get("entity") not in _CREATED:
        return []
    model, view = _CREATED[result["entity"]]
    found = model.objects.filter(external_id__in=keys)
    if model is Grant:
        found = found.select_related("identity", "entitlement")
    by_key = {obj.external_id: obj for obj in found}
    return [(str(by_key[key]), reverse(view, args=[by_key[key].pk])) for key in keys if key in by_key]


@dataclass
class RowErrors:
    """Every error of one row of the file, shown together."""

    line: int
    key: str
    messages: list[str] = field(default_factory=list)


def _grouped(row_errors) -> list[RowErrors]:
    """Every error of a row together, rows in file order: one entry per (line, external id)."""
    rows: dict[tuple, RowErrors] = {}
    for error in row_errors:
        line, key, message = (
            (error["line"], error["key"], error["message"])
            if isinstance(error, dict)
            else (error.line, error.key, error.message)
        )
        rows.setdefault((line, key), RowErrors(line, key)).messages.append(message)
    return list(rows.values())


def _columns() -> list[dict]:
    return [
        {
            "entity": entity,
            "columns": COLUMNS[entity] + OPTIONAL_COLUMNS[entity],
            "required": REQUIRED_COLUMNS[entity],
        }
        for entity in ENTITIES
    ]


@login_required
@require_http_methods(["GET", "POST"])
def import_upload(request):
    if not policies.can_import(request.user):
        raise PermissionDenied(IMPORT_REFUSED)
    context = _page_context(request)
    status = 200
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid() and form.cleaned_data["file"].size > settings.IMPORT_INLINE_MAX_BYTES:
            job = _queue(request, form)
            if not request.htmx:
                return redirect("governance:import_job", job.pk)
            context.update(_job_context(job))
            form = ImportForm()
        elif form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                context["result"] = import_apply(actor=request.user, **_import_arguments(form))
            except ImportRejected as exc:
                context.update(
                    rejected=exc.message,
                    row_errors=_grouped(exc.row_errors[:ERRORS_SHOWN]),
                    more_errors=max(len(exc.row_errors) - ERRORS_SHOWN, 0),
                    file_name=upload.name,
                )
                status = 400
            except DomainError as exc:
                context["rejected"] = exc.message
                status = exc.status_code
        else:
            status = 400
    else:
        form = ImportForm()
    context["form"] = form
    if "result" in context:
        context["created_links"] = _created_links(context["result"])
    return render(request, "governance/import.html", context, status=status)


def _page_context(request) -> dict:
    return {
        "columns": _columns(),
        "entities": ENTITIES,
        "formats": FORMATS,
        "admin": policies.is_admin(request.user),
    }


def _import_arguments(form: ImportForm) -> dict:
    """What the upload form gives an import, inline or queued."""
    upload = form.cleaned_data["file"]
    return {
        "entity": form.cleaned_data["entity"],
        "fmt": form.cleaned_data["format"],
        "content": upload.read(),
        "file_name": upload.name,
        "dry_run": form.cleaned_data["dry_run"],
    }


def _queue(request, form) -> ImportJob:
    return import_job_submit(actor=request.user, **_import_arguments(form))


def _job_context(job: ImportJob) -> dict:
    """A finished job shows what an inline import shows; a running one, how far it got."""
    context: dict = {"job": job}
    if job.status == ImportJob.Status.SUCCEEDED:
        context["result"] = job.result
    elif job.status == ImportJob.Status.REJECTED:
        context.update(
            rejected=job.message,
            row_errors=_grouped(job.row_errors[:ERRORS_SHOWN]),
            more_errors=max(job.error_count - ERRORS_SHOWN, 0),
            file_name=job.file_name,
        )
    elif job.status == ImportJob.Status.FAILED:
        context["rejected"] = job.message
    return context


@login_required
@require_GET
def import_job_detail(request, pk: int):
    """The import page following one job; htmx polls it until the job is done."""
    if not policies.can_import(request.user):
        raise PermissionDenied(IMPORT_REFUSED)
    jobs = ImportJob.objects.defer("content")
    if not policies.is_admin(request.user):
        jobs = jobs.filter(created_by=request.user)  # an owner follows their own imports, nobody else's
    job = get_object_or_404(jobs, pk=pk)
    context = {**_page_context(request), "form": ImportForm()}
    context.update(_job_context(job))
    if "result" in context:
        context["created_links"] = _created_links(context["result"])
    return render(request, "governance/import.html", context)


@login_required
@require_GET
def import_template(request, entity: str):
    """A CSV with the columns of one kind of file and no rows: the place to start a file from."""
    if not policies.can_import(request.user):
        raise PermissionDenied(IMPORT_REFUSED)
    if entity not in ENTITIES:
        raise Http404(f"Choose one of {', '.join(ENTITIES)}.")
    response = HttpResponse(",".join(COLUMNS[entity] + OPTIONAL_COLUMNS[entity]) + "\r\n", content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{entity}-template.csv"'
    return response


@login_required
@require_GET
def export_download(request):
    """Without ?entity: a page of download links; with it, the file, streamed."""
    if not _can_export(request.user):
        raise PermissionDenied("Only admins and auditors may export the inventory.")
    entity = request.GET.get("entity", "")
    fmt = request.GET.get("format", "csv")
    if not entity:
        return render(request, "governance/export.html", {"entities": ENTITIES, "formats": FORMATS})
    if entity not in ENTITIES or fmt not in FORMATS:
        return HttpResponseBadRequest(f"Choose entity from {', '.join(ENTITIES)} and format from {', '.join(FORMATS)}.")
    export_recorded(actor=request.user, what=entity, filters={}, file_format=fmt)
    if fmt == "csv":
        header, rows = csv_rows(entity)
        return streaming_csv_response(f"{entity}.csv", header, rows)
    response = StreamingHttpResponse(json_chunks(entity), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{entity}.json"'
    return response
