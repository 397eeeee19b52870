from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from governance.roles import user_roles
from jit.selectors import dashboard_panels
from jit.selectors_break_glass import live_panel

from .health import READINESS_CHECKS, run_checks


@never_cache
def health(request, names=None):
    """200 when every check passes, else 503. Load balancers and strangers get names and pass/fail;
    staff also get each check's detail (backend, sweep age, overdue grants) to see why."""
    checks = run_checks(names)
    ok = all(check["ok"] for check in checks.values())
    if not request.user.is_staff:
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503)


def health_ready(request):
    """Readiness for a load balancer: can this node serve (database and broker)?"""
    return health(request, names=READINESS_CHECKS)


@login_required
def dashboard(request):
    context = dashboard_panels(user=request.user)
    context["break_glass_panel"] = live_panel(user=request.user)
    # In order: `user_roles|dictsort:0` sorted by first letter only, the rest in the set's order (a process's).
    context["roles_shown"] = sorted(user_roles(request.user))
    return render(request, "portal/dashboard.html", context)
