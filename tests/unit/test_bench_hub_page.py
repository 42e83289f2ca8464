"""``python -m bench.hub`` replaces section 9 of docs/benchmarks.md in place and leaves the
other sections as they were (the rows on the page come from one run of both spawners)."""

from __future__ import annotations

from bench.common import Row
from bench.hub import SECTION, page_section, splice

PAGE = "# Benchmarks\n\n## 8. The spawn storm onto a swarm\n\nrows of 8\n\n## Profiled and fixed\n\ntext\n"


def one_row(ratio: float) -> Row:
    return Row(SECTION, "a culled server's return", 0.5, 5.0, ratio, ratio, ratio, 3, unit="s")


def test_the_section_is_inserted_before_the_history_then_replaced():
    first = splice(PAGE, page_section([one_row(0.1)]))
    assert first.index("## 8.") < first.index("## 9. JupyterHub") < first.index("## Profiled and fixed")
    assert "| 0.100 |" in first and "rows of 8" in first
    second = splice(first, page_section([one_row(0.2)]))
    assert second.count("## 9. JupyterHub") == 1
    assert "| 0.200 |" in second and "| 0.100 |" not in second
    assert second.replace("0.200", "0.100") == first  # nothing else changed


def test_a_run_without_rows_says_so():
    assert "*Not run.*" in page_section([])
