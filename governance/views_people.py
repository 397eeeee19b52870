"""The people search behind every person field's combobox (owner, backup owner, manager, delegate).

It answers htmx with at most `PEOPLE_SHOWN` options (one query whatever the inventory's size); the
field itself still takes a login, email or exact name typed in, so a page works without script.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .forms import person_text
from .selectors_people import MAX_SEARCH, MIN_SEARCH, can_pick_people, people_matching

LISTBOX_SUFFIX = "_listbox"


@login_required
@require_GET
def people_search(request):
    """`q` (or the value of the field named by `field`, as htmx sends an input): the people it names."""
    if not can_pick_people(request.user):
        raise PermissionDenied("Only people who keep the inventory true pick people.")
    field = request.GET.get("field", "")
    text = request.GET.get("q") if "q" in request.GET else request.GET.get(field, "")
    if request.GET.get("lines") == "1":  # a list of people, one a line: the line being typed is the last
        text = text.rsplit("\n", 1)[-1]
    text = text.strip()
    listbox = request.GET.get("listbox", "people") if request.GET.get("listbox", "").isidentifier() else "people"
    context = {"text": text, "listbox": listbox, "people": [], "error": ""}
    status = 200
    if len(text) > MAX_SEARCH:
        context["error"], status = f"Type at most {MAX_SEARCH} characters.", 400
    elif len(text) >= MIN_SEARCH:
        people = list(people_matching(text, signs_in=request.GET.get("signs_in") == "1"))
        context["people"] = [(person, person_text(person)) for person in people]
    context["searched"] = len(text) >= MIN_SEARCH and not context["error"]
    return render(request, "governance/partials/people_options.html", context, status=status)
