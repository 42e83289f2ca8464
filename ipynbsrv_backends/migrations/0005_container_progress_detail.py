from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ipynbsrv_backends', '0004_names_whole_string'),
    ]

    operations = [
        migrations.AddField(
            model_name='container',
            name='progress_detail',
            field=models.CharField(blank=True, editable=False, help_text='What its creation is doing now, e.g. how far the node got pulling the image.', max_length=255, verbose_name='progress detail'),
        ),
        migrations.AddField(
            model_name='container',
            name='error_code',
            field=models.CharField(blank=True, editable=False, help_text='The machine code of the error that ended its creation in the background (image_not_found, backend_unavailable, ...); empty otherwise.', max_length=64, verbose_name='error code'),
        ),
    ]
