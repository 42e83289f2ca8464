"""Quotas: what an operation under way holds of its user's quota (services/quotas.py)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ipynbsrv_backends", "0006_container_lookup_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="QuotaReservation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("action", models.CharField(max_length=32, verbose_name="action")),
                ("memory", models.BigIntegerField(default=0, verbose_name="memory (bytes)")),
                ("cpus", models.FloatField(default=0, verbose_name="CPUs")),
                ("snapshots", models.PositiveIntegerField(default=0, verbose_name="snapshots")),
                ("images", models.PositiveIntegerField(default=0, verbose_name="images")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="created")),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "verbose_name": "quota reservation",
                "verbose_name_plural": "quota reservations",
                "indexes": [models.Index(fields=["user", "created_at"], name="ipynbsrv_quota_reservation")],
            },
        ),
    ]
