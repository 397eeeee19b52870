"""The fixes a finding offers the viewing user, for pages that list findings (the identity page)."""

from django import template

from ..services.finding_fixes import fixes_for

register = template.Library()


@register.simple_tag(takes_context=True)
def finding_fixes(context, finding, identity=None) -> list:
    """The fixes `finding` offers this user. `identity`: the page's identity, the finding's own,
    so asking costs no query per finding."""
    if identity is not None and finding.identity_id == identity.pk:
        finding.identity = identity
    return fixes_for(context["request"].user, finding)
