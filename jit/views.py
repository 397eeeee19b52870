"""Placeholder views until the request pages land."""

from django.http import Http404


def request_catalogue(request, **kwargs):
    raise Http404


def request_create(request, **kwargs):
    raise Http404


def request_preview(request, **kwargs):
    raise Http404


def request_list(request, **kwargs):
    raise Http404


def request_detail(request, **kwargs):
    raise Http404


def request_cancel(request, **kwargs):
    raise Http404


def request_activate(request, **kwargs):
    raise Http404


def approval_queue(request, **kwargs):
    raise Http404


def approval_decide(request, **kwargs):
    raise Http404


def my_grants(request, **kwargs):
    raise Http404


def grant_extend(request, **kwargs):
    raise Http404


def grant_release(request, **kwargs):
    raise Http404


def grant_no_renew(request, **kwargs):
    raise Http404


def notification_list(request, **kwargs):
    raise Http404


def notifications_read(request, **kwargs):
    raise Http404
