"""History tables keep three indexes each: the primary key, `id` and `history_user_id`.

simple-history copies every index, unique field and foreign key of a model onto its history (text ones
with a text-pattern twin) and indexes `history_date`: the identity's history carried 18 indexes, the
grant's 12. Every reader of a history filters by the object's `id` (obj.history, the identity page's
change history, the connector's job keys, the held-access report); deleting a login sets
`history_user_id` to NULL. Nothing reads a history by status, owner, name, team or date alone.
`history_date` goes by SIMPLE_HISTORY_DATE_INDEX = False (portal settings), the rest by `no_db_index`.

Measured 2026-12-03 (2 cores shared, load 5.7-6.4): 100,000 history rows in one INSERT ... SELECT into
copies of each table, three rounds, a CHECKPOINT before each:

    governance_historicalidentity   18 indexes 5.8 / 6.9 / 7.7 s   kept 3: 2.0 / 1.2 / 1.2 s   (+ history_date: 1.4 / 1.5 / 1.3 s)
    governance_historicalgrant      12 indexes 2.0 / 2.3 / 2.3 s   kept 3: 0.8 / 0.8 / 0.7 s   (+ history_date: 0.9 / 0.9 / 0.8 s)

and the indexes of 300,000 identity history rows take 15 MB instead of 94 MB.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0017_finding_exceptions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="historicalentitlement",
            name="external_id",
            field=models.CharField(blank=True, max_length=200, null=True, verbose_name="external id"),
        ),
        migrations.AlterField(
            model_name="historicalentitlement",
            name="history_date",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="historicalentitlement",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.identity",
                verbose_name="owner",
            ),
        ),
        migrations.AlterField(
            model_name="historicalentitlement",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("retired", "Retired")],
                default="active",
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="historicalentitlement",
            name="system",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.system",
                verbose_name="system",
            ),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="entitlement",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.entitlement",
                verbose_name="entitlement",
            ),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="external_id",
            field=models.CharField(blank=True, max_length=200, null=True, verbose_name="external id"),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="history_date",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="identity",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.identity",
                verbose_name="identity",
            ),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="renewal_of",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.grant",
                verbose_name="renews",
            ),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="revoked_by",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="revoked by",
            ),
        ),
        migrations.AlterField(
            model_name="historicalgrant",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending_provision", "Pending provisioning"),
                    ("active", "Active"),
                    ("revoking", "Revoking"),
                    ("expired", "Expired"),
                    ("revoked", "Revoked"),
                    ("provision_failed", "Provisioning failed"),
                    ("revoke_failed", "Revocation failed"),
                ],
                default="pending_provision",
                max_length=24,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="backup_owner",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.identity",
                verbose_name="backup owner",
            ),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="external_id",
            field=models.CharField(blank=True, max_length=200, null=True, verbose_name="external id"),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="history_date",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="kind",
            field=models.CharField(
                choices=[
                    ("human", "Human"),
                    ("service_account", "Service account"),
                    ("api_key", "API key"),
                    ("workload", "Workload"),
                    ("ai_agent", "AI agent"),
                ],
                max_length=32,
                verbose_name="kind",
            ),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="manager",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.identity",
                verbose_name="manager",
            ),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="name",
            field=models.CharField(max_length=200, verbose_name="name"),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.identity",
                verbose_name="owner",
            ),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("suspended", "Suspended"), ("offboarded", "Offboarded")],
                default="active",
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="team",
            field=models.CharField(blank=True, max_length=120, verbose_name="team"),
        ),
        migrations.AlterField(
            model_name="historicalidentity",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="login",
            ),
        ),
        migrations.AlterField(
            model_name="historicalsodrule",
            name="history_date",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="historicalsodrule",
            name="name",
            field=models.CharField(max_length=200, verbose_name="name"),
        ),
        migrations.AlterField(
            model_name="historicalsodrule_entitlements",
            name="entitlement",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                db_tablespace="",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.entitlement",
            ),
        ),
        migrations.AlterField(
            model_name="historicalsodrule_entitlements",
            name="sodrule",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                db_tablespace="",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.sodrule",
            ),
        ),
        migrations.AlterField(
            model_name="historicalsystem",
            name="external_id",
            field=models.CharField(blank=True, max_length=200, null=True, verbose_name="external id"),
        ),
        migrations.AlterField(
            model_name="historicalsystem",
            name="history_date",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="historicalsystem",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.identity",
                verbose_name="owner",
            ),
        ),
        migrations.AlterField(
            model_name="historicalsystem",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("retired", "Retired")],
                default="active",
                max_length=16,
                verbose_name="status",
            ),
        ),
    ]
