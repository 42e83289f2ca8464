"""Tests on the multi-node test bed: network namespaces, each with its own dockerd (and host
API), made by ``scripts/cluster.sh`` (the fixtures: :mod:`tests.testbed`).

The fixtures' module was ``cluster.py`` at the top of ``tests`` before this package took its
name; its names are re-exported here, so ``from tests.cluster import cluster`` keeps working.
"""

from ..testbed import INSTANCE, REPO, SCRIPT, Cluster, cluster, cluster_nodes  # noqa: F401
