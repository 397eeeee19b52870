"""Configuration checked at start-up, so a typo in the environment stops `manage.py check` instead of
answering 500 to the first workload that asks for a token."""

from django.core import checks


@checks.register(checks.Tags.security)
def workload_issuers_are_valid(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from .services.federation import issuers

    try:
        issuers()
    except ValueError as error:
        return [checks.Error(str(error), hint="Fix the WORKLOAD_ISSUERS JSON.", id="governance.E001")]
    return []
