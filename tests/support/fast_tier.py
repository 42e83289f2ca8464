"""What ``make test-fast`` runs (``IPYNBSRV_TEST_BACKEND=memory``; see tests/conftest.py).

The master's tests below run on ``Memory`` nodes: the same tests ``make test`` runs on the
real engine. The few of them that are about the real engine itself are skipped there with the
reason given here. Every other test runs when it reaches no engine (no marker of
``NEEDS_ENGINE[0]``, no fixture of ``NEEDS_ENGINE[1]``).

By folder: all of ``tests/unit`` (its conftest refuses an engine fixture or marker there), the
master's files of ``tests/integration`` (on Memory nodes) and the tests of the other
integration files that reach no engine; nothing of ``tests/cluster``. The lists below name
files by their name alone (unique across the folders; ``tests/unit/test_layout.py`` checks
that each exists, in ``tests/integration``).
"""

from __future__ import annotations

#: The master's test modules (services, admin, users' API, proxy, audit, draining) that run on
#: Memory nodes.
MASTER_FILES = frozenset({
    "test_services.py", "test_admin.py", "test_api.py", "test_api_async.py", "test_api_isolation.py",
    "test_proxy.py", "test_audit.py", "test_draining.py", "test_quotas.py", "test_hub_spawner.py",
})

#: Engine-free modules left to ``make test`` all the same: they start other processes and
#: wait on them (seconds each), which is not what the fast tier is for.
PROCESS_FILES = frozenset({"test_hostapi_cli.py", "test_postgres.py"})

#: Fixtures that start or reach something real besides the engine (skipped in MASTER_FILES too).
REAL_ONLY = frozenset({"docker_backend", "registry", "hostapi_node", "http_remote_backend"})
#: Markers and fixtures of tests that need a real engine, a test bed, PostgreSQL or a build.
NEEDS_ENGINE = (("engine", "cluster", "postgres", "packaging"), REAL_ONLY | {"raw_docker", "engine"})

_DOWN = "a node whose Docker engine does not answer (a base_url that leads nowhere)"
_KIND = "the Backend row's kind is Docker"

#: ``file::test`` of the master's tests that are about the real engine, and why.
ENGINE_ONLY: dict[str, str] = {
    "test_services.py::test_a_down_node_is_skipped": _DOWN,
    "test_services.py::test_a_node_that_fails_after_its_health_check_is_skipped": _DOWN,
    "test_services.py::test_delete_on_a_down_node_keeps_the_record": _DOWN,
    "test_services.py::test_reconcile_an_unreachable_node": _DOWN,
    "test_services.py::test_direct_backend_and_service_agree": "it builds a Docker backend from the node's options",
    "test_admin.py::test_a_backend_change_that_would_break_a_node_is_refused": _KIND,
    "test_admin.py::test_a_down_node_gives_readable_errors": _DOWN,
    "test_audit.py::test_a_failed_admin_delete_is_recorded": _DOWN,
    "test_api.py::test_nodes_are_for_staff_only": _KIND,
    "test_api.py::test_no_secret_in_any_answer": "the secrets it hides are the Docker backend's registry credentials",
    "test_quotas.py::test_volume_space_as_the_engine_measures_it": "the Docker engine measures volumes (system df)",
    "test_quotas.py::test_a_nodes_host_api_reports_its_volumes_usage": "the Docker engine measures volumes (system df)",
    "test_hub_spawner.py::test_a_node_that_is_down_reaches_the_hub_in_the_masters_words": _DOWN,
    "test_hub_spawner.py::test_a_commit_of_a_hub_server_leaves_no_token_in_the_image":
        "the Docker engine copies a container's environment into the images committed from it",
    "test_proxy.py::test_through_nginx_only_the_owner_reaches_a_real_notebook":
        "a real notebook server in a container behind nginx",
}
