from django.apps import AppConfig


class IdentitySourcesConfig(AppConfig):
    name = "identity_sources"
    verbose_name = "Identity sources"

    def ready(self) -> None:
        from .sso import checks  # noqa: F401  registers the single sign-on settings checks
