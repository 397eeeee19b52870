"""Placeholder until the imports pages land."""

urlpatterns: list = []
