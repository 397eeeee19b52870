from django.apps import AppConfig


class JitConfig(AppConfig):
    name = "jit"
    verbose_name = "Requests and just-in-time access"

    def ready(self) -> None:
        # jit sits above governance: it plugs its rules into the inventory's lifecycle here.
        from governance.services import catalogue, identities

        from .services.requests import close_requests_of_offboarded, refuse_requests_for_retired

        if close_requests_of_offboarded not in identities.OFFBOARDING_HOOKS:
            identities.OFFBOARDING_HOOKS.append(close_requests_of_offboarded)
        if refuse_requests_for_retired not in catalogue.RETIREMENT_HOOKS:
            catalogue.RETIREMENT_HOOKS.append(refuse_requests_for_retired)
