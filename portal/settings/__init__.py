"""Settings modules.

`base` is production: everything comes from the environment (12-factor), DEBUG is off and SECRET_KEY
is required. `dev` (the `make run` command and manage.py's default) and `test` (pytest) start from
`base` and only relax what a laptop or a test run needs.
"""
