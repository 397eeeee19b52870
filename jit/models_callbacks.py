"""Where an agent wants to hear how its request ended (kept apart from the request: the secret is not
history, API or audit data)."""

from django.db import models


class RequestCallback(models.Model):
    request = models.OneToOneField(
        "jit.AccessRequest", verbose_name="request", on_delete=models.CASCADE, related_name="callback"
    )
    url = models.URLField("callback URL", max_length=500)
    # The receiver verifies our HMAC with it; shown once, in the answer to the submission.
    secret = models.CharField("signing secret", max_length=64)

    class Meta:
        verbose_name = "request callback"

    def __str__(self) -> str:
        return f"callback of request {self.request_id}"
