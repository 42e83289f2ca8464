"""The tests' layout (README, "Two commands"): every test file in the folder of what it needs,
the fast tier's lists naming files that exist, and every test path the docs name real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..support import fast_tier
from .conftest import misplaced

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
FOLDERS = ("unit", "integration", "cluster")
#: Where a path like ``tests/integration/test_api.py`` may be named.
NAMING = [REPO / "README.md", REPO / "Makefile", REPO / "pytest.ini", REPO / "setup.py",
          *sorted((REPO / "docs").glob("*.md")), REPO / "docs" / "proxy-nginx.conf",
          *sorted((REPO / "ipynbsrv_backends").rglob("*.py")), *sorted(TESTS.rglob("*.py"))]


def files_by_name() -> dict[str, Path]:
    return {path.name: path for folder in FOLDERS for path in (TESTS / folder).glob("test_*.py")}


def test_every_test_file_is_in_a_folder_of_what_it_needs():
    loose = sorted(path.name for path in TESTS.glob("test_*.py"))
    assert not loose, (f"{loose} sit directly in tests/: move each (git mv) to tests/unit (no engine, no "
                       "server), tests/integration (real components) or tests/cluster (the test bed)")
    names = [path.name for folder in FOLDERS for path in (TESTS / folder).glob("test_*.py")]
    assert len(names) == len(set(names)), "a test file's name is used twice (the fast tier's lists go by name)"


def test_the_cluster_folder_holds_the_test_bed_tests():
    for path in (TESTS / "cluster").glob("test_*.py"):
        text = path.read_text()
        assert "from ..testbed import" in text or "mark.cluster" in text, f"{path.name} does not use the test bed"


def test_the_fast_tiers_lists_name_integration_files():
    files = files_by_name()
    named = fast_tier.MASTER_FILES | fast_tier.PROCESS_FILES | {key.split("::")[0] for key in fast_tier.ENGINE_ONLY}
    for name in sorted(named):
        assert name in files, f"tests/support/fast_tier.py names {name}, which is no test file"
        assert files[name].parent.name == "integration", f"{name} needs the engine or a process under make test"


def test_every_test_path_the_docs_name_exists():
    stale = set()
    for path in NAMING:
        for named in re.findall(r"\btests/[\w/]+\.py\b", path.read_text()):
            if not (REPO / named).exists():
                stale.add(f"{path.relative_to(REPO)} names {named}")
    assert not stale, "\n".join(sorted(stale))


@pytest.mark.parametrize(("fixtures", "markers", "why"), [
    (["db", "settings"], ["django_db", "parametrize"], []),
    (["db", "make_node", "engine"], ["engine"], ["engine", "@engine"]),
    (["registry"], [], ["registry"]),
    (["tmp_path"], ["cluster"], ["@cluster"]),
])
def test_the_unit_folder_refuses_what_needs_an_engine(fixtures, markers, why):
    assert misplaced(fixtures, markers) == why
