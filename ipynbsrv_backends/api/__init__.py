"""The users' REST API: each user's containers, snapshots and images, and (for staff) the
nodes. Include it in a project with ``path("api/", include("ipynbsrv_backends.api.urls"))``.

Every action goes through :mod:`ipynbsrv_backends.services`; see ``docs/api.md``.
"""
