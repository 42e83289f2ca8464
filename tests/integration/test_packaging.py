"""The package as a new user gets it: an sdist and a wheel that pass ``twine check``, a wheel
that carries the migrations and templates, and a clean virtualenv where the wheel goes into a
new Django project set up by following the README alone.

The build runs without isolation (``build`` and ``setuptools`` come with the test extra) and
the wheel is installed with ``--no-index``: its dependencies come from a wheelhouse kept next
to the test virtualenv, downloaded once (the only time this touches the package index).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parent.parent.parent
PACKAGE = REPO / "ipynbsrv_backends"
WHEELHOUSE = Path(os.environ.get("IPYNBSRV_WHEELHOUSE", Path(sys.prefix) / "wheelhouse"))


def run(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure show what it printed."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def quiet_env() -> dict[str, str]:
    """This environment without PYTHONDONTWRITEBYTECODE (with it, setuptools notes that it
    skips byte-compiling: a note about the machine, not about the package)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warnings_in(output: str) -> list[str]:
    """The lines of a build's output that warn (setuptools' warnings, its framed notices)."""
    return [line for line in output.splitlines() if re.search(r"warn|deprecat|^\s*!!\s*$", line, re.I)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """``python -m build``: the sdist, then the wheel built from it; and what it printed."""
    out = tmp_path_factory.mktemp("dist")
    result = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO, cwd=REPO, env=quiet_env())
    return out, result.stdout + result.stderr


@pytest.fixture(scope="module")
def dist(built) -> Path:
    return built[0]


def test_the_build_prints_no_warning(built):
    """The package data (the admin's templates) is declared as setuptools wants it: building
    the sdist and the wheel warns about nothing."""
    assert not warnings_in(built[1]), "\n".join(warnings_in(built[1]))


def test_an_editable_install_prints_no_warning(tmp_path):
    """What ``make venv`` does (``pip install -e .``), through the same build hook pip calls,
    warns about nothing, and the installed package is this work tree."""
    out = tmp_path / "editable"
    out.mkdir()
    hook = f"from setuptools import build_meta; print(build_meta.build_editable({str(out)!r}))"
    result = run(sys.executable, "-c", hook, cwd=REPO, env=quiet_env())
    output = result.stdout + result.stderr
    assert not warnings_in(output), "\n".join(warnings_in(output))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "--disable-pip-version-check", "install",
        "-q", "--no-deps", "--no-index", *out.glob("*.whl"))
    where = run(venv / "bin" / "python", "-c", "import ipynbsrv_backends; print(ipynbsrv_backends.__file__)",
                cwd=tmp_path)
    assert where.stdout.strip() == str(PACKAGE / "__init__.py")


def artefact(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_sdist_and_wheel_pass_twine_check(dist):
    files = [artefact(dist, "*.tar.gz"), artefact(dist, "*.whl")]
    result = run(sys.executable, "-m", "twine", "check", "--strict", *files)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_wheel_carries_migrations_templates_and_static_files(dist):
    names = set(zipfile.ZipFile(artefact(dist, "*.whl")).namelist())
    wanted = [
        path.relative_to(REPO).as_posix()
        for folder in ("migrations", "templates", "static", "locale")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    ]
    assert any(name.startswith("ipynbsrv_backends/migrations/0001") for name in wanted)
    assert any(name.endswith(".html") for name in wanted)
    missing = sorted(set(wanted) - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "ipynbsrv_backends/hostapi/cli.py" in names
    metadata = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "ipynbsrv_hostapi" in zipfile.ZipFile(artefact(dist, "*.whl")).read(metadata).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_the_sdist_carries_the_license_changelog_and_docs(dist):
    with tarfile.open(artefact(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "docs/contract.md", "setup.py"} <= names


def readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def install_wheel(venv: Path, wheel: Path) -> None:
    """Install the wheel with --no-index; fill the wheelhouse from the index only if needed."""
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "--disable-pip-version-check"]
    offline = [*pip, "install", "-q", "--no-index", "--find-links", WHEELHOUSE, wheel]
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    if subprocess.run([str(a) for a in offline], capture_output=True, timeout=300).returncode != 0:
        logger.info("filling the wheelhouse %s for %s", WHEELHOUSE, wheel.name)
        run(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
            "--dest", WHEELHOUSE, wheel)
        run(*offline)


def test_a_new_project_set_up_by_the_readme_passes_check_and_migrates(dist, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)  # pip comes from outside (--python)
    install_wheel(venv, artefact(dist, "*.whl"))
    bin_ = venv / "bin"
    # the installed package is the wheel, not this work tree
    where = run(bin_ / "python", "-c", "import ipynbsrv_backends, sys; print(ipynbsrv_backends.__file__)",
                cwd=tmp_path)
    assert str(venv) in where.stdout, where.stdout

    run(bin_ / "django-admin", "startproject", "mysite", cwd=tmp_path)
    project = tmp_path / "mysite"
    settings = project / "mysite" / "settings.py"

    # INSTALLED_APPS and urls.py exactly as the README shows them
    (apps,) = [block for block in readme_blocks("python") if block.lstrip().startswith("INSTALLED_APPS = [")]
    (urls,) = [block for block in readme_blocks("python") if "urlpatterns" in block and "import" in block]
    text = settings.read_text()
    text, count = re.subn(r"INSTALLED_APPS = \[.*?\]\n", apps, text, count=1, flags=re.S)
    assert count == 1
    settings.write_text(text)
    (project / "mysite" / "urls.py").write_text(urls)

    # the README's commands, in order
    steps = [line.split("#")[0].split() for block in readme_blocks("bash") for line in block.splitlines()
             if line.startswith("python manage.py ")]
    assert [s[2] for s in steps][:3] == ["check", "migrate", "createsuperuser"], steps
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTHON"))},
           "DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_EMAIL": "admin@example.org",
           "DJANGO_SUPERUSER_PASSWORD": "a-new-users-password"}
    manage = [bin_ / "python", "manage.py"]
    check = run(*manage, "check", cwd=project, env=env)
    assert "no issues" in check.stdout
    migrate = run(*manage, "migrate", "--no-input", cwd=project, env=env)
    assert "ipynbsrv_backends.0001_initial... OK" in migrate.stdout
    run(*manage, "createsuperuser", "--no-input", cwd=project, env=env)
    run(*manage, "makemigrations", "--check", "--dry-run", "ipynbsrv_backends", cwd=project, env=env)
    run(*manage, "check", "--database", "default", cwd=project, env=env)
    nodes = run(*manage, "ipynbsrv_nodes", cwd=project, env=env)
    assert "No nodes" in nodes.stdout, nodes.stdout  # the app's own command runs from the wheel

    # the admin pages render from the wheel's templates, the users' API answers
    probe = (
        "from django.test import Client\n"
        "c = Client()\n"
        "assert c.login(username='admin', password='a-new-users-password')\n"
        "for url in ['/admin/ipynbsrv_backends/node/', '/admin/ipynbsrv_backends/container/add/',"
        " '/api/containers/']:\n"
        "    r = c.get(url, HTTP_HOST='localhost')\n"
        "    assert r.status_code == 200, (url, r.status_code)\n"
        "print('pages ok')\n"
    )
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    shown = run(*manage, "shell", "-c", probe, cwd=project, env=env)
    assert "pages ok" in shown.stdout
