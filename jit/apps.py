from django.apps import AppConfig


class JitConfig(AppConfig):
    verbose_name = "Requests and just-in-time access"
    name = "jit"
