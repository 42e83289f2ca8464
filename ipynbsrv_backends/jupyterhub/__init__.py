"""JupyterHub support: :class:`IpynbsrvSpawner`, which a hub selects with
``c.JupyterHub.spawner_class = "ipynbsrv"`` (install ``ipynbsrv-backends[jupyterhub]``;
docs/jupyterhub.md). Imports nothing of Django: it runs inside the hub's process."""

from .spawner import IpynbsrvSpawner, MasterError

__all__ = ["IpynbsrvSpawner", "MasterError"]
