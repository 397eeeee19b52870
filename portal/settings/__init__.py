"""Settings modules.

`base` is production: everything comes from the environment (12-factor), DEBUG is off and SECRET_KEY
is required; manage.py, wsgi, asgi and the Celery app default to it. `dev` (`make run` exports it)
and `test` (pytest) start from `base` and only relax what a laptop or a test run needs.
"""
