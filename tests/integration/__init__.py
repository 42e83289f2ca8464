"""Tests on real components of this machine: the Docker engine, host API processes, the
registry, nginx, the browser, PostgreSQL, the wheel. The master's tests among them also run on
the in-memory backend in ``make test-fast`` (:data:`tests.support.fast_tier.MASTER_FILES`)."""
