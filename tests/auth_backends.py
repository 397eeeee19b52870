"""The test settings' sign-in throttle: django-axes for every sign-in through a request, as in production.

`Client.login()` authenticates without a request, which axes refuses outright (ValueError): with no
client there is nothing to throttle, so such a call is passed on to the next backend here.
"""

from axes.backends import AxesStandaloneBackend


class AxesBackendForTestClient(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
