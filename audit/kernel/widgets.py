"""Form widgets built in Python where Django's template rendering costs per option or per input, and a
model choice field that reads its few options in one query."""

from django import forms
from django.forms.utils import flatatt
from django.utils.safestring import SafeString, mark_safe

from .html import html_text


class QuickSelect(forms.Select):
    """A `<select>` with the markup of Django's, its options joined in Python.

    Django renders every option through a template include (~0.3 ms each on the bench machine), and
    every list page draws its filter form's selects (kinds, statuses, systems) on every request. The
    attributes (`id`, `aria-invalid`, `aria-describedby`) and the selected option come out as Django's
    (the first match only, unless the select is multiple).
    """

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        if self.allow_multiple_selected:
            attrs["multiple"] = True
        wanted = {str(v) for v in self.format_value(value)}
        found = False
        parts = [f'<select name="{html_text(name)}"{flatatt(attrs)}>']

        def option(option_value, label) -> str:
            nonlocal found
            key = "" if option_value is None else str(option_value)
            chosen = key in wanted and (self.allow_multiple_selected or not found)
            found = found or chosen
            return f'<option value="{html_text(key)}"{" selected" if chosen else ""}>{html_text(label)}</option>'

        for option_value, label in self.choices:
            if isinstance(label, (list, tuple)):
                parts.append(f'<optgroup label="{html_text(option_value)}">')
                parts.extend(option(v, sub_label) for v, sub_label in label)
                parts.append("</optgroup>")
            else:
                parts.append(option(option_value, label))
        parts.append("</select>")
        return mark_safe("".join(parts))


class QuickInput(forms.widgets.Input):
    """Django's `<input>` (django/forms/widgets/input.html and attrs.html), joined in Python.

    Three templates an input (the widget's, input.html, attrs.html) cost ~0.15 ms; the audit trail's
    filters have seven. Same context (`get_context`: the value as the widget formats it, its attributes) and
    the same markup."""

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        widget = self.get_context(name, value, attrs)["widget"]
        parts = [f'<input type="{html_text(widget["type"])}" name="{html_text(widget["name"])}"']
        if widget["value"] is not None:
            parts.append(f' value="{html_text(widget["value"])}"')
        for key, attr in widget["attrs"].items():
            if attr is True:
                parts.append(f" {html_text(key)}")
            elif attr is not False:
                parts.append(f' {html_text(key)}="{html_text(attr)}"')
        return mark_safe("".join(parts) + ">")


class QuickTextInput(QuickInput, forms.TextInput):
    pass


class QuickCheckboxInput(QuickInput, forms.CheckboxInput):
    pass


class QuickHiddenInput(QuickInput, forms.HiddenInput):
    pass


class ListedChoices(forms.models.ModelChoiceIterator):
    """The options read by one plain query: Django's `iterator()` opened a server-side cursor for
    them (DECLARE, FETCH, CLOSE: three round trips for a dozen systems)."""

    def __iter__(self):
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in self.queryset:
            yield self.choice(obj)


class ListedModelChoiceField(forms.ModelChoiceField):
    """A ModelChoiceField whose few options are read as a list, not through a server-side cursor."""

    iterator = ListedChoices
