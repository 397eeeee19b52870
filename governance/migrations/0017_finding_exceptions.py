"""Accepted risks: a finding may be `accepted` (its exception register row says who, why and until when)."""

import django.db.models.deletion
import django.db.models.functions.text
import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0016_trigram_search"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="finding",
            name="status",
            field=models.CharField(
                choices=[("open", "Open"), ("resolved", "Resolved"), ("accepted", "Risk accepted")],
                db_index=True,
                default="open",
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.CreateModel(
            name="FindingException",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reason", models.TextField(max_length=4000, verbose_name="reason")),
                ("accepted_by_name", models.CharField(blank=True, max_length=200, verbose_name="accepted by (name)")),
                ("accepted_at", models.DateTimeField(verbose_name="accepted")),
                ("expires_at", models.DateTimeField(verbose_name="accepted until")),
                (
                    "status",
                    models.CharField(
                        choices=[("active", "Active"), ("expired", "Expired"), ("closed", "Closed (finding resolved)")],
                        db_index=True,
                        default="active",
                        max_length=16,
                        verbose_name="status",
                    ),
                ),
                ("ended_at", models.DateTimeField(blank=True, null=True, verbose_name="ended")),
                (
                    "accepted_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="accepted by",
                    ),
                ),
                (
                    "finding",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="exceptions",
                        to="governance.finding",
                        verbose_name="finding",
                    ),
                ),
            ],
            options={
                "verbose_name": "finding exception",
                "ordering": ["-accepted_at", "-id"],
                "indexes": [models.Index(fields=["status", "expires_at"], name="gov_findexc_status_expires_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status", "active")),
                        fields=("finding",),
                        name="governance_findingexception_one_active_per_finding",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("expires_at__gt", models.F("accepted_at"))),
                        name="governance_findingexception_expires_after_accepted",
                    ),
                    models.CheckConstraint(
                        condition=django.db.models.lookups.LessThanOrEqual(
                            django.db.models.functions.text.Length("reason"), 4000
                        ),
                        name="governance_findingexception_reason_bounded",
                    ),
                ],
            },
        ),
    ]
