"""What the master's ``HttpRemote`` and a node's host API share, free of Django and DRF.

- :mod:`.routes`: the route table, one :class:`~.routes.Route` per backend method;
- :mod:`.format`: pks in URL paths, and the member that carries a call's options;
- :mod:`.signing`: the request signatures.

Nothing in this package imports Django, DRF or the rest of the package: the client
(``backends/http_remote.py``) imports from here, never from the server (``hostapi/``).
"""

from __future__ import annotations

from .format import EMPTY_PK, OPTIONS_PARAM, PK_PATTERN, decode_pk, encode_pk

__all__ = ["EMPTY_PK", "PK_PATTERN", "OPTIONS_PARAM", "encode_pk", "decode_pk"]
