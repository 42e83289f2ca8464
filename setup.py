from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent

setup(
    name="ipynbsrv-backends",
    version="0.1.0",
    description="Run users' containers (one notebook server per user, or many) on one Docker host "
    "or a fleet of them, from inside Django.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    # Namespace packages too, so the folders of templates are listed as what they are (data
    # inside the package) instead of setuptools warning that it installs them unlisted.
    packages=find_namespace_packages(include=["ipynbsrv_backends", "ipynbsrv_backends.*"],
                                     exclude=["*.__pycache__"]),
    # The packages sit at the top of the checkout: said outright, an editable install (make
    # venv) is a plain path entry to the checkout, without setuptools' notice about an import
    # finder. With it, setuptools does not match MANIFEST.in's files to the packages: package
    # data is listed here (the admin's templates; their folders are among the packages).
    package_dir={"": "."},
    include_package_data=True,
    package_data={"": ["*.html"]},
    zip_safe=False,
    install_requires=[
        "Django>=5.2",
        "djangorestframework>=3.15",
        "drf-spectacular>=0.27",
        "docker>=7.0,<8",
        "requests>=2.31",
        "gunicorn>=22",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-django>=4.8",
            "pytest-timeout>=2.3",
            # the master's concurrency tests also run on a real PostgreSQL (scripts/postgres.sh)
            "psycopg[binary]>=3.1",
            # the notebook tests talk to Jupyter kernels over their websocket
            "websocket-client>=1.6",
            # browser tests (Debian's chromium + chromium-driver, no browser download)
            "selenium>=4.15",
            # packaging tests (python -m build --no-isolation needs the build requirements here)
            "build>=1.0",
            "setuptools>=68",
            "wheel",
            "twine>=5",
            # conventions: make lint
            "ruff>=0.5",
            "mypy>=1.10",
            "django-stubs>=5.0",
            "djangorestframework-stubs>=3.15",
            "types-requests",
            "types-gunicorn",
            # the JupyterHub spawner's tests run it with JupyterHub's own objects (make test-fast too)
            "jupyterhub>=5",
            # schema-driven fuzzing of the host API and the users' API (tests/integration/test_fuzz.py)
            "schemathesis>=4.0,<5",
        ],
        # the JupyterHub spawner (ipynbsrv_backends.jupyterhub): what it imports inside the hub
        "jupyterhub": [
            "jupyterhub>=5",
            "traitlets>=5",
            "tornado>=6",
            "requests>=2.31",
        ],
        # make bench: profilers for when a benchmark target is missed (never needed at run time)
        "bench": [
            "pyinstrument>=4.6",
            "py-spy>=0.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "ipynbsrv_hostapi=ipynbsrv_backends.hostapi.cli:main",
            "ipynbsrv_firewall=ipynbsrv_backends.firewall:main",
        ],
        # c.JupyterHub.spawner_class = "ipynbsrv"
        "jupyterhub.spawners": [
            "ipynbsrv=ipynbsrv_backends.jupyterhub:IpynbsrvSpawner",
        ],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 5.2",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
)
