from django.urls import reverse

from . import BaseConnector, Outcome


def grant_url(grant) -> str:
    return reverse("governance:grant_detail", args=[grant.pk])


class ManualConnector(BaseConnector):
    """A person does the work: the system owner is asked, then confirms in the portal."""

    name = "manual"

    def provision(self, grant) -> Outcome:
        from ..services.notifications import notify, users_of

        system = grant.entitlement.system
        notify(
            recipients=users_of(system.owner),
            kind="grant.provision_requested",
            subject=f"Please grant {grant.entitlement.name} on {system.name} to {grant.identity.name}",
            body="Grant the access in the system, then confirm it in the portal so the clock starts.",
            link=grant_url(grant),
            key=f"grant:{grant.pk}:provision-ask",
        )
        return Outcome.PENDING

    def revoke(self, grant) -> Outcome:
        from ..services.notifications import notify, users_of

        system = grant.entitlement.system
        notify(
            recipients=users_of(system.owner),
            kind="grant.revoke_requested",
            subject=f"Please remove {grant.entitlement.name} on {system.name} from {grant.identity.name}",
            body="Remove the access in the system, then confirm it in the portal.",
            link=grant_url(grant),
            key=f"grant:{grant.pk}:revoke-ask:{grant.updated_at.timestamp()}",
        )
        return Outcome.PENDING
