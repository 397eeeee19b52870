"""Django's database sessions, read by a query whose SQL is built once per process (SESSION_ENGINE).

Every signed-in request reads its session first; Django built that one-table query anew each time,
which took longer than PostgreSQL takes to answer it (audit.kernel.prepared).
"""

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from audit.kernel.prepared import PreparedQuery


def _live_session(session_key, now):
    return Session.objects.filter(session_key=session_key, expire_date__gt=now).values_list(
        "session_data", "expire_date"
    )


_LIVE_SESSION = PreparedQuery(_live_session)


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self):
        rows = _LIVE_SESSION.rows(self.session_key, timezone.now())
        if not rows:
            self._session_key = None  # as Django's: a missing or expired session starts anew
            return None
        data, expire_date = rows[0]
        return self.model(session_key=self.session_key, session_data=data, expire_date=expire_date)
