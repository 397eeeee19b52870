#!/usr/bin/env python
"""Django's command-line utility. Defaults to the production settings (as portal/celery.py and wsgi do);
`make run` exports the dev settings and pytest uses the test settings."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
