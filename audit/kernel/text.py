"""Bounds and cleaning for what people type: one limit for free text, one rule for names.

Every layer uses these (model fields and their database CHECKs, forms, API serializers, the
importer), so a text refused on a page is refused through the API and in a file too (issue 11).
"""

from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual

# The longest free text (a justification, a comment, a reason, a description) anyone may store: a few
# screens of prose. Bounded so that one request cannot make an approver's queue megabytes long.
FREE_TEXT_MAX_LENGTH = 4000

# How much of a free text a list shows (`truncatechars`); the detail page shows all of it.
LIST_TEXT_LENGTH = 200

# Bidirectional embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069): in a name
# they reorder what is shown ("gnp.exe" read as "exe.png"), so a name never keeps them.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NO_BIDI = dict.fromkeys(map(ord, BIDI_CONTROLS))


def strip_bidi(value: str) -> str:
    """`value` without bidi controls (anything but a string is returned as is)."""
    return value.translate(_NO_BIDI) if isinstance(value, str) else value


def clean_name(value: str) -> str:
    """A name as stored: no bidi controls, no surrounding white space."""
    return strip_bidi(value).strip() if isinstance(value, str) else value


def clean_names(obj: models.Model, fields: tuple[str, ...]) -> None:
    """Clean the name fields of a model instance in place (for the model's `clean()`)."""
    for name in fields:
        setattr(obj, name, clean_name(getattr(obj, name)))


def free_text_field_constraints(*fields: str) -> list[models.CheckConstraint]:
    """Database CHECKs `char_length(field) <= FREE_TEXT_MAX_LENGTH`: the database refuses too."""
    return [
        models.CheckConstraint(
            condition=LessThanOrEqual(Length(field), FREE_TEXT_MAX_LENGTH),
            name=f"%(app_label)s_%(class)s_{field}_bounded",
        )
        for field in fields
    ]
