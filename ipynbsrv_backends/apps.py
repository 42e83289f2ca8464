from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IpynbsrvBackendsConfig(AppConfig):
    name = "ipynbsrv_backends"
    verbose_name = _("Container backends")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the settings reload receiver and register the system checks; nothing
        # here touches the network.
        from . import checks, conf, proxy, signals  # noqa: F401 (proxy: the revocation receivers)
