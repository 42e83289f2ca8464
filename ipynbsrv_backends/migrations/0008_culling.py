"""Idle culling: each container's last known activity, and what the idle policy did to it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ipynbsrv_backends', '0007_quota'),
    ]

    operations = [
        migrations.AddField(
            model_name='container',
            name='last_activity',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='last activity',
                                       help_text="The latest use the master knows of: a request through the proxy, "
                                                 "or its notebook server's own last activity (kernels, terminals, "
                                                 "its API)."),
        ),
        migrations.AddField(
            model_name='container',
            name='cull_reason',
            field=models.CharField(blank=True, editable=False, max_length=255, verbose_name='idle culling',
                                   help_text="What the idle policy did to it and why, e.g. 'suspended after 2 h "
                                             "idle'; cleared when it is started or resumed."),
        ),
        migrations.AddField(
            model_name='container',
            name='culled_at',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='culled at'),
        ),
    ]
