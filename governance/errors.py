"""Domain errors shared by every service. Views show them as messages; the API maps them to status codes."""


class DomainError(Exception):
    """A request the domain refuses; `message` is safe to show to the user."""

    status_code = 400
    default_code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        field_errors: dict[str, list[str]] | None = None,
        code: str = "",
        reasons: list[str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}
        # Machine-readable, for API callers: a program branches on it, a person reads `message`.
        self.code = code or self.default_code
        # A policy's refusal: every reason it gave (`message` is the first), so a caller fixes all at once.
        self.reasons = list(reasons or [])


class ValidationFailed(DomainError):
    """Bad input: nothing was written."""


class PermissionRefused(DomainError):
    """The actor may not do this to this object."""

    status_code = 403
    default_code = "permission_denied"


class InvalidTransition(DomainError):
    """The object is not in a state that allows this (lost race, replay, terminal state)."""

    status_code = 409
    default_code = "conflict"
