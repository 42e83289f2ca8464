"""WSGI application of the host API, for a WSGI server of your choice.

``ipynbsrv_hostapi`` serves it with gunicorn; see :mod:`.settings` for the environment
variables it reads.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipynbsrv_backends.hostapi.settings")
application = get_wsgi_application()
