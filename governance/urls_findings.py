"""Placeholder until the findings pages land."""

urlpatterns: list = []
