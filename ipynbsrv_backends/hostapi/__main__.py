"""``python -m ipynbsrv_backends.hostapi`` is ``ipynbsrv_hostapi``."""

from .cli import main

raise SystemExit(main())
