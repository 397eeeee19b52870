"""Start-up checks of the single sign-on settings: a typo in a role map must not pass silently."""

from django.conf import settings
from django.core import checks

from governance.roles import Role


@checks.register(checks.Tags.security)
def sso_settings_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    problems: list[checks.CheckMessage] = []
    role_map = getattr(settings, "OIDC_ROLE_MAP", {})
    if not isinstance(role_map, dict):
        return [checks.Error('OIDC_ROLE_MAP must be a JSON object: {"provider group": "portal role"}.', id="sso.E001")]
    unknown = sorted({role for role in role_map.values() if role not in Role.values})
    if unknown:
        problems.append(
            checks.Error(
                f"OIDC_ROLE_MAP names roles the portal does not have: {', '.join(map(str, unknown))}.",
                hint=f"Use one of: {', '.join(Role.values)}.",
                id="sso.E002",
            )
        )
    if settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID and not settings.OIDC_RP_CLIENT_SECRET:
        problems.append(
            checks.Warning("OIDC_RP_CLIENT_SECRET is empty: most providers refuse the code exchange.", id="sso.W001")
        )
    if not settings.LOCAL_PASSWORDS and not settings.BREAK_GLASS_USERNAME:
        problems.append(
            checks.Warning(
                "LOCAL_PASSWORDS is off and BREAK_GLASS_USERNAME is empty: nobody can sign in if the provider is down.",
                id="sso.W002",
            )
        )
    return problems
