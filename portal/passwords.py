"""People choose and change their own passwords (Django's views); the reset link goes by the outbox."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.urls import path, reverse_lazy

from governance.services.logins import send_password_link


class OutboxPasswordResetForm(PasswordResetForm):
    """Mail the link through the outbox: delivered after the answer, retried while the mail server is down."""

    def get_users(self, email):
        # With local passwords off a reset would set a password nobody can sign in with; only the break-glass
        # login keeps one. The page still answers "sent" whoever asks, so it tells nobody who has a login.
        users = super().get_users(email)
        if settings.LOCAL_PASSWORDS:
            return users
        return (
            user for user in users if settings.BREAK_GLASS_USERNAME and user.username == settings.BREAK_GLASS_USERNAME
        )

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, **kwargs):
        user = context["user"]
        send_password_link(user, key=f"login:{user.pk}:self-reset:{context['token']}")


urlpatterns = [
    path(
        "password/reset/",
        auth_views.PasswordResetView.as_view(form_class=OutboxPasswordResetForm),
        name="password_reset",
    ),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(post_reset_login=False),
        name="password_reset_confirm",
    ),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path(
        "password/change/",
        auth_views.PasswordChangeView.as_view(success_url=reverse_lazy("password_change_done")),
        name="password_change",
    ),
    path("password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]
