"""``ipynbsrv_hostapi``: serve this node's container backend to the master.

Runs in the foreground under gunicorn (threaded workers), never Django's development
server. Each worker process builds its own backend after the fork. SIGTERM stops the
server and its workers cleanly (in-flight requests get ``--graceful-timeout`` seconds) and
the command exits 0, as a process supervisor expects.

The token callers must present comes from the environment variable
``IPYNBSRV_HOSTAPI_TOKEN``; without it the command refuses to start unless
``--insecure-no-token`` is given (local development only). The token is never logged.

With ``IPYNBSRV_HOSTAPI_SIGNING_KEY`` set, every request must also be signed
(``docs/security.md``); ``--state-dir`` is then required: the workers share the nonces
they have seen there, and a key rotated by the master is kept there across restarts.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from gunicorn.app.base import BaseApplication

from ..conf import SIGNING_KEY_ENV, STATE_DIR_ENV, TOKEN_ENV

logger = logging.getLogger("ipynbsrv_backends.hostapi")

__all__ = ["main", "build_parser", "HostAPIServer"]

DEFAULT_BACKEND = "ipynbsrv_backends.backends.Docker"
SETTINGS_MODULE = "ipynbsrv_backends.hostapi.settings"
EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipynbsrv_hostapi",
        description="Serve this node's container backend over HTTP(S) to the ipynbsrv master. "
        f"Callers must present the token in the environment variable {TOKEN_ENV}.",
    )
    _add_address_arguments(parser)
    _add_backend_arguments(parser)
    _add_server_arguments(parser)
    _add_security_arguments(parser)
    return parser


def _add_address_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the node listens."""
    parser.add_argument(
        "-l",
        "--listen",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default: 127.0.0.1; use the node's internal address, "
        "e.g. 192.168.0.2, so the master can reach it — avoid 0.0.0.0)",
    )
    parser.add_argument("-p", "--port", type=_port, default=8080, help="TCP port (default: 8080)")


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The backend the node serves."""
    parser.add_argument(
        "--container-backend",
        default=DEFAULT_BACKEND,
        metavar="DOTTED.PATH",
        help=f"backend class to serve (default: {DEFAULT_BACKEND})",
    )
    parser.add_argument(
        "--container-backend-args",
        default="{}",
        metavar="JSON",
        help='keyword arguments of the backend class as a JSON object, e.g. '
        '\'{"base_url": "unix://var/run/docker.sock"}\', or @PATH to read them from a file '
        '(keeps secrets such as registry_password out of the process list) (default: {})',
    )


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """How the node's server runs: logs, processes, shutdown and TLS."""
    parser.add_argument(
        "-d", "--debug", action="store_true", help="verbose logs, an access log and tracebacks"
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=2, help="worker processes (default: 2)"
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=4, help="threads per worker (default: 4)"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_positive_int,
        default=30,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests may finish before workers are killed "
        "(default: 30)",
    )
    parser.add_argument("--certfile", metavar="PATH", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", metavar="PATH", help="the certificate's private key (PEM)")


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """Request signing and the unauthenticated development mode."""
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"directory for the node's rotated signing keys and seen nonces (created 0700; "
        f"required with {SIGNING_KEY_ENV})",
    )
    parser.add_argument(
        "--signature-window",
        type=_positive_int,
        default=60,
        metavar="SECONDS",
        help="how far a signed request's timestamp may be from this node's clock (default: 60)",
    )
    parser.add_argument(
        "--insecure-no-token",
        action="store_true",
        help=f"serve without any authentication when {TOKEN_ENV} is not set "
        "(local development only: anyone who reaches the port controls the node's containers)",
    )


def _backend_args(text: str) -> dict[str, Any]:
    source = "--container-backend-args"
    if text.startswith("@"):
        source = f"--container-backend-args {text}"
        try:
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CommandError(f"{source} must be a JSON object of keyword arguments, not {type(value).__name__}")
    return value


def _check_tls(certfile: str | None, keyfile: str | None) -> None:
    if not certfile and not keyfile:
        return
    if not (certfile and keyfile):
        raise CommandError("--certfile and --keyfile go together")
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not os.path.isfile(path):
            raise CommandError(f"{flag} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise CommandError(f"cannot use --certfile {certfile} with --keyfile {keyfile}: {exc}") from exc


def _check_signing(args: argparse.Namespace) -> None:
    """A signing key needs a state directory shared by the workers (never print the key)."""
    from .signing import valid_key

    key = os.environ.get(SIGNING_KEY_ENV, "")
    if not key:
        os.environ.pop(STATE_DIR_ENV, None)
        if args.state_dir:
            logger.warning("--state-dir is unused: %s is not set, requests are not signed.", SIGNING_KEY_ENV)
        return
    if not valid_key(key):
        raise CommandError(f"{SIGNING_KEY_ENV} must be 32 to 256 printable characters without spaces")
    if not args.state_dir:
        raise CommandError(
            f"{SIGNING_KEY_ENV} is set: give --state-dir DIR, where the workers share the nonces "
            "they have seen and rotated keys are kept"
        )
    state_dir = os.path.abspath(args.state_dir)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        if os.stat(state_dir).st_mode & 0o077:
            # It holds the signing keys (SQLite's -wal and -shm files too): owner only.
            os.chmod(state_dir, 0o700)
            logger.info("--state-dir %s is now readable by its owner only (0700).", state_dir)
        probe = os.path.join(state_dir, ".write-test")
        with open(probe, "w", encoding="utf-8"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise CommandError(f"cannot use --state-dir {state_dir}: {exc.strerror or exc}") from exc
    os.environ[STATE_DIR_ENV] = state_dir
    os.environ["IPYNBSRV_HOSTAPI_SIGNATURE_WINDOW"] = str(args.signature_window)
    logger.info("Requests must be signed (window %d s); node state in %s.", args.signature_window, state_dir)


def _bind_address(listen: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(listen).version == 6
    except ValueError:
        is_v6 = False
    return f"[{listen}]:{port}" if is_v6 else f"{listen}:{port}"


def _check_can_listen(listen: str, port: int) -> None:
    """Fail early, and readably, when the address cannot be bound (gunicorn would retry
    for five seconds and then exit with a less helpful message)."""
    try:
        infos = socket.getaddrinfo(listen, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(f"cannot listen on {listen}: {exc}") from exc
    family, socktype, proto, _, sockaddr = infos[0]
    with socket.socket(family, socktype, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {_bind_address(listen, port)}: {exc.strerror or exc}", EXIT_FAILURE
            ) from exc


def _is_loopback(listen: str) -> bool:
    try:
        return ipaddress.ip_address(listen).is_loopback
    except ValueError:
        return listen == "localhost"


def _check_backend(dotted_path: str, options: dict[str, Any], debug: bool) -> None:
    """Build the backend once in the parent to report a bad class or bad arguments now,
    then drop it: each worker builds its own after the fork."""
    import django
    from django.core.exceptions import ImproperlyConfigured

    from ..errors import BackendError, BackendUnavailableError
    from .node import build_backend

    django.setup()
    try:
        backend = build_backend(dotted_path, options)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    except BackendUnavailableError as exc:
        logger.warning("The backend cannot reach its engine yet (%s); serving anyway, "
                       "status/ reports the error until it can.", exc)
        return
    except BackendError as exc:
        raise CommandError(f"{dotted_path} failed to start: {exc}", EXIT_FAILURE) from exc
    except Exception as exc:  # a third-party constructor may raise anything: report it
        if debug:
            logger.exception("%s failed to start", dotted_path)
        raise CommandError(f"{dotted_path} failed to start: {type(exc).__name__}: {exc}", EXIT_FAILURE) from exc
    close = getattr(backend, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # closing the probe instance is best effort
            logger.debug("Closing the probe backend failed: %s", exc)


def _end_streams_on_stop(worker: Any) -> None:
    """gunicorn's ``post_worker_init``: on SIGTERM a worker stops gracefully, waiting for the
    requests it serves; an open event stream would hold it for the whole graceful timeout, so
    its streams end at their next line instead (:data:`.views.STOPPING`)."""
    import signal

    from .views import STOPPING

    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: Any) -> None:
        STOPPING.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop)


class HostAPIServer(BaseApplication):
    """gunicorn, configured from the command line; the WSGI app is loaded in each worker."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from .wsgi import application

        return application


def _gunicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "bind": [_bind_address(args.listen, args.port)],
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": "gthread",
        # gthread workers keep notifying the arbiter while requests run, so this is not a
        # limit on long requests (a commit or a pull may take minutes).
        "timeout": 120,
        "graceful_timeout": args.graceful_timeout,
        "keepalive": 5,
        "certfile": args.certfile,
        "keyfile": args.keyfile,
        "accesslog": "-" if args.debug else None,
        "errorlog": "-",
        "loglevel": "debug" if args.debug else "info",
        "proc_name": "ipynbsrv_hostapi",
        "preload_app": False,
        # No runtime control socket (gunicorn >= 25): one less thing listening on a node.
        "control_socket_disable": True,
        "post_worker_init": _end_streams_on_stop,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run(args)
    except CommandError as exc:
        if args.debug and exc.__cause__ is not None:
            logger.debug("Details:", exc_info=exc.__cause__)
        print(f"ipynbsrv_hostapi: error: {exc}", file=sys.stderr)
        return exc.status


def _run(args: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV, "")
    if not token and not args.insecure_no_token:
        raise CommandError(
            f"{TOKEN_ENV} is not set: set it to a long random secret (the master's HttpRemote "
            "must present the same token), or pass --insecure-no-token for local development"
        )
    options = _backend_args(args.container_backend_args)
    _check_tls(args.certfile, args.keyfile)
    _check_signing(args)

    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    os.environ["IPYNBSRV_HOSTAPI_BACKEND"] = args.container_backend
    os.environ["IPYNBSRV_HOSTAPI_BACKEND_ARGS"] = json.dumps(options)
    os.environ["IPYNBSRV_HOSTAPI_LOG_LEVEL"] = "DEBUG" if args.debug else "INFO"
    if token:
        os.environ.pop("IPYNBSRV_HOSTAPI_INSECURE_NO_TOKEN", None)
        if args.insecure_no_token:
            logger.warning("--insecure-no-token is ignored: %s is set, and required.", TOKEN_ENV)
    else:
        os.environ["IPYNBSRV_HOSTAPI_INSECURE_NO_TOKEN"] = "1"
        logger.warning(
            "Serving WITHOUT authentication (--insecure-no-token): anyone who reaches %s "
            "controls this node's containers.",
            _bind_address(args.listen, args.port),
        )
        if not _is_loopback(args.listen):
            logger.warning("--insecure-no-token on a non-loopback address (%s): do not do this "
                           "outside a throw-away development machine.", args.listen)

    _check_backend(args.container_backend, options, args.debug)
    _check_can_listen(args.listen, args.port)
    scheme = "https" if args.certfile else "http"
    logger.info(
        "Serving %s on %s://%s (%d workers x %d threads)",
        args.container_backend,
        scheme,
        _bind_address(args.listen, args.port),
        args.workers,
        args.threads,
    )
    HostAPIServer(_gunicorn_options(args)).run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
