"""`{% person_picker %}`: a person field's combobox on a page that writes its form by hand (delegates)."""

from django import template

from ..forms import PersonWidget

register = template.Library()


@register.simple_tag
def person_picker(name: str, *, signs_in: bool = False, **attrs):
    """The input and its list of matches, as a PersonField renders them (`attrs`: id, required, ...)."""
    attrs = {key.replace("_", "-") if key.startswith("aria_") else key: value for key, value in attrs.items()}
    return PersonWidget(attrs=attrs, signs_in=signs_in).render(name, "")
