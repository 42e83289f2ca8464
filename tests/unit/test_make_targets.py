"""What a newcomer's two commands do, checked without running them whole: ``make demo``
installs only the demo's packages; ``make test`` ends with one line per stage and a verdict
(scripts/test-summary.sh, run here for real on pytest output) and fails when a stage failed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SUMMARY = REPO / "scripts" / "test-summary.sh"

GREEN, BOLD, YELLOW, RESET = "\x1b[32m", "\x1b[1m", "\x1b[33m", "\x1b[0m"
CLOSING = (f"{GREEN}====================== {GREEN}{BOLD}12 passed{RESET}, {YELLOW}1 skipped{RESET}{GREEN} in 3.10s"
           f"{RESET}{GREEN} ======================={RESET}\n")  # pytest's closing line, in colour


def summary(tmp_path: Path, tests: int, lint: int, matrix: int, python_new: str = "/usr/bin/python3.13",
            log: str = "collected 13 items\n" + CLOSING) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "pytest.log"
    path.write_text(log)
    return subprocess.run(["bash", str(SUMMARY), str(path), str(tests), str(lint), str(matrix), python_new],
                          capture_output=True, text=True, timeout=30)


def test_all_passed(tmp_path):
    result = summary(tmp_path, 0, 0, 0)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-1] == "make test: PASSED (tests, lint and matrix)"
    assert lines[-4].split() == ["tests", "passed", "(12", "passed,", "1", "skipped", "in", "3.10s)"]
    assert lines[-3].split()[:2] == ["lint", "passed"] and lines[-2].split()[:2] == ["matrix", "passed"]


@pytest.mark.parametrize(("statuses", "named"), [((1, 0, 0), "tests"), ((0, 2, 0), "lint"), ((0, 0, 2), "matrix"),
                                                  ((1, 2, 0), "tests lint")])
def test_a_failed_stage_is_named_and_fails_the_run(tmp_path, statuses, named):
    result = summary(tmp_path, *statuses)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == f"make test: FAILED ({named}; see that stage's output above)"
    for name, status in zip(("tests", "lint", "matrix"), statuses, strict=True):
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert ("FAILED" in line and f"exit {status}" in line) if status else "passed" in line


def test_a_matrix_without_python_is_skipped_and_a_silent_pytest_is_said(tmp_path):
    result = summary(tmp_path, 0, 0, 0, python_new="", log="")
    assert result.returncode == 0
    assert "matrix  skipped (no Python 3.12+ found" in result.stdout
    assert "pytest printed no closing line" in result.stdout


def make_n(*targets: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", "-B", *targets], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_demo_installs_only_what_it_needs():
    demo = make_n("demo")
    assert "scripts/packages.sh demo" in demo and "scripts/packages.sh test" not in demo
    test = make_n("test")  # a dry run: the recipe names no $(MAKE), so make runs nothing
    assert "scripts/packages.sh test" in test and "scripts/test-summary.sh" in test
    script = (REPO / "scripts" / "packages.sh").read_text()
    installs = [line for line in script.splitlines() if line.lstrip().startswith("apt-get install")]
    assert installs and all("--no-install-recommends" in line for line in installs)
    assert "make test" in (REPO / ".ci" / "run").read_text()
