"""The host API: a node's local container backend served over HTTP.

A node runs ``ipynbsrv_hostapi`` (see :mod:`.cli`) or includes :mod:`.urls` in a Django
project; the master reaches it with :class:`~ipynbsrv_backends.backends.HttpRemote`.
The rules both sides share (the route table, pk encoding, the options parameter, request
signing) live in :mod:`ipynbsrv_backends.wire`, which imports nothing from Django, so a
master uses them without the views.
"""
