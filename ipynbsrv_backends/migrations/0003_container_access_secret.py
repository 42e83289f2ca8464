from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ipynbsrv_backends', '0002_audit_and_move_progress'),
    ]

    operations = [
        migrations.AddField(
            model_name='container',
            name='access_secret',
            field=models.CharField(blank=True, editable=False, help_text='What the notebook server in the container requires of every request; the proxy adds it for the owner. Never shown.', max_length=128, verbose_name='access secret'),
        ),
    ]
