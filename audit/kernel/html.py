"""HTML text written out in Python, where Django's template machinery costs per value (a page's rows)."""

from html import escape


def html_text(value) -> str:
    """As `{{ value }}` prints text: escaped, unless already safe (Django's `conditional_escape`, without its
    lazy-text wrapper: the same output, a fraction of the cost on pages that print thousands of values)."""
    return value.__html__() if hasattr(value, "__html__") else escape(str(value))
