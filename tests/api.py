"""Calling the REST API as a signed-in user in tests."""

from rest_framework.test import APIClient

API = "/api/v1"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
