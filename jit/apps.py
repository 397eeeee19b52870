from django.apps import AppConfig


class JitConfig(AppConfig):
    name = "jit"
    verbose_name = "Requests and just-in-time access"

    def ready(self) -> None:
        # jit sits above governance: it plugs its rules into the inventory's lifecycle here.
        from governance.services import catalogue, identities

        from .services.delegations import end_delegations_of_offboarded
        from .services.requests import close_requests_of_offboarded, refuse_requests_for_retired

        for hook in (close_requests_of_offboarded, end_delegations_of_offboarded):
            if hook not in identities.OFFBOARDING_HOOKS:
                identities.OFFBOARDING_HOOKS.append(hook)
        if refuse_requests_for_retired not in catalogue.RETIREMENT_HOOKS:
            catalogue.RETIREMENT_HOOKS.append(refuse_requests_for_retired)
