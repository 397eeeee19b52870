"""Links between logins and the identity providers that vouch for them."""

from django.conf import settings
from django.db import models


class SsoLink(models.Model):
    """One login as known to one OpenID Connect issuer, by the issuer's stable `sub` claim.

    The e-mail address can change or be reused at the provider; `(issuer, subject)` cannot, so every
    sign-in after the first finds its login by this pair and never by the e-mail.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="login", on_delete=models.CASCADE, related_name="sso_links"
    )
    issuer = models.CharField("issuer", max_length=500)
    subject = models.CharField("subject", max_length=255)
    created_at = models.DateTimeField("linked", auto_now_add=True)
    last_login_at = models.DateTimeField("last sign-in", null=True, blank=True)

    class Meta:
        verbose_name = "single sign-on link"
        verbose_name_plural = "single sign-on links"
        ordering = ["issuer", "subject"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_link_unique_issuer_subject"),
            # One link per login and issuer: a login is one person at that provider.
            models.UniqueConstraint(fields=["user", "issuer"], name="sso_link_unique_user_issuer"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


from .models_scim import ScimGroup, ScimSource, ScimUser  # noqa: E402, F401  (SCIM provisioning)
