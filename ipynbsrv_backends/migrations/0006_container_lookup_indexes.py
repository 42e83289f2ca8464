"""Indexes that keep the master flat as it grows: the proxy's lookup by base URL, the
admin's date hierarchy and its audit log filter by node; orderings that no longer join the users' table.

``base_url`` is a ``varchar(2048)``: PostgreSQL and SQLite index it whole, but MySQL's InnoDB
refuses keys over 3,072 bytes (767 on the old COMPACT row format), and 2,048 utf8mb4
characters are up to 8,192. On MySQL the index therefore covers the first
:data:`MYSQL_PREFIX` characters (a prefix index; equality lookups still use it and compare
the whole value on the rows it finds). The model's state is the same everywhere. A later
migration that alters ``base_url`` must do the same on MySQL: Django would rebuild the index
on the whole column there.
"""

from typing import Any

from django.conf import settings
from django.db import migrations, models

#: Characters of ``base_url`` MySQL indexes: 191 x 4 bytes fits every InnoDB row format.
MYSQL_PREFIX = 191

BASE_URL_INDEX = models.Index(fields=["base_url"], name="ipynbsrv_container_base_url")


def mysql_prefix_sql(schema_editor: Any, model: Any) -> str:
    quote = schema_editor.quote_name
    column = model._meta.get_field("base_url").column
    return (f"CREATE INDEX {quote(BASE_URL_INDEX.name)} ON {quote(model._meta.db_table)} "
            f"({quote(column)}({MYSQL_PREFIX}))")


class AddBaseUrlIndex(migrations.AddIndex):
    """``AddIndex`` of the base URL index, as a prefix index on MySQL."""

    def __init__(self) -> None:
        super().__init__(model_name="container", index=BASE_URL_INDEX)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__name__, [], {}

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "mysql":
            schema_editor.execute(mysql_prefix_sql(schema_editor, model))
        else:
            schema_editor.add_index(model, self.index)


class Migration(migrations.Migration):

    dependencies = [
        ('ipynbsrv_backends', '0005_container_progress_detail'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='container',
            options={'ordering': ['owner_id', 'name'], 'verbose_name': 'container',
                     'verbose_name_plural': 'containers'},
        ),
        migrations.AlterModelOptions(
            name='snapshot',
            options={'ordering': ['container_id', '-created_at'], 'verbose_name': 'snapshot',
                     'verbose_name_plural': 'snapshots'},
        ),
        AddBaseUrlIndex(),
        migrations.AddIndex(
            model_name='container',
            index=models.Index(fields=['created_at'], name='ipynbsrv_container_created'),
        ),
        migrations.AddIndex(
            model_name='auditentry',
            index=models.Index(fields=['node'], name='ipynbsrv_audit_node'),
        ),
    ]
