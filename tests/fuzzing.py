"""Schema-driven fuzzing with schemathesis, shared by the host API and users' API tests.

:func:`fuzz` runs every operation of a schema through Hypothesis, with valid data and with
data that breaks the schema (negative mode), (a bounded number of
examples each, no shrinking, no example database) against a live server over real HTTP,
collects every failure instead of stopping at the first, and returns what it did, so the
test can assert zero server errors and zero answers outside the schema and print its case
count.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

#: Examples per operation; ``IPYNBSRV_FUZZ_EXAMPLES`` raises it for a longer local run.
MAX_EXAMPLES = int(os.environ.get("IPYNBSRV_FUZZ_EXAMPLES", "15"))


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)

    def summary(self, name: str) -> str:
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(self.statuses.items()))
        return f"{name} fuzzing: {self.cases} cases ({codes}); {len(self.failures)} failure(s)"


def fuzz(
    schema: Any,
    base_url: str,
    *,
    headers: dict[str, str] | Callable[[Any], dict[str, str]],
    prepare: Callable[[Any, int], None] | None = None,
    skip: set[str] = frozenset(),
    max_examples: int = MAX_EXAMPLES,
    auth: Any = None,
) -> FuzzReport:
    """Fuzz every operation of ``schema`` but those whose operationId is in ``skip``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.failures import FailureGroup

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    report = FuzzReport()
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    def make_run(operation: Any, mode: Any) -> Callable[[], None]:
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            if prepare is not None:
                prepare(case, report.cases)
            extra = headers(case) if callable(headers) else headers
            response = case.call(base_url=base_url, session=session, headers=extra, timeout=120)
            report.cases += 1
            report.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=checks, headers=extra)
            except (AssertionError, FailureGroup) as exc:  # what schemathesis' checks raise
                report.failures.append(
                    f"[{mode.value}] {case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{str(exc)[:600]}\n  body: {response.text[:300]!r}"
                )

        return run

    operations = [result.ok() for result in schema.get_all_operations()]
    for mode in GenerationMode:
        for operation in operations:
            operation_id = operation.definition.raw.get("operationId", operation.label)
            if operation_id in skip:
                continue
            try:
                make_run(operation, mode)()
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (e.g. no parameters at all).
                report.unsatisfiable.append(f"[{mode.value}] {operation_id}")
    session.close()
    return report
