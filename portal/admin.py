"""Logins and role groups are kept in the portal (Logins and roles), through audited services:
the Django admin would let an admin set someone's password and sign in as them."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

for model in (get_user_model(), Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
