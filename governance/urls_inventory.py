"""Placeholder until the inventory pages land."""

urlpatterns: list = []
