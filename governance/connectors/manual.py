from django.urls import reverse

from . import BaseConnector, Outcome


def grant_url(grant) -> str:
    return reverse("governance:grant_detail", args=[grant.pk])


class ManualConnector(BaseConnector):
    """A person does the work: the system owner is asked, then confirms in the portal."""

    name = "manual"

    def _ask_owner(self, grant, *, kind: str, subject: str, body: str, key: str) -> Outcome:
        from ..services.notifications import notify, users_of

        notify(
            recipients=users_of(grant.entitlement.system.owner),
            kind=kind,
            subject=subject,
            body=body,
            link=grant_url(grant),
            key=key,
        )
        return Outcome.PENDING

    def provision(self, grant) -> Outcome:
        system = grant.entitlement.system
        return self._ask_owner(
            grant,
            kind="grant.provision_requested",
            subject=f"Please grant {grant.entitlement.name} on {system.name} to {grant.identity.name}",
            body="Grant the access in the system, then confirm it in the portal so the clock starts.",
            key=f"grant:{grant.pk}:provision-ask:{grant.updated_at.timestamp()}",
        )

    def revoke(self, grant) -> Outcome:
        system = grant.entitlement.system
        return self._ask_owner(
            grant,
            kind="grant.revoke_requested",
            subject=f"Please remove {grant.entitlement.name} on {system.name} from {grant.identity.name}",
            body="Remove the access in the system, then confirm it in the portal.",
            key=f"grant:{grant.pk}:revoke-ask:{grant.updated_at.timestamp()}",
        )
