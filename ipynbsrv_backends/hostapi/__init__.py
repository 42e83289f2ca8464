"""The host API: a node's local container backend served over HTTP.

A node runs ``ipynbsrv_hostapi`` (see :mod:`.cli`) or includes :mod:`.urls` in a Django
project; the master reaches it with :class:`~ipynbsrv_backends.backends.HttpRemote`.
The wire rules both sides share (pk encoding, the options parameter) live in :mod:`.wire`,
which imports nothing from Django so a master can use it without the views.
"""
