"""Debian's nginx running ``docs/proxy-nginx.conf`` as the docs say, for the tests and the bench:
the template with its placeholders filled in, and a main ``nginx.conf`` of its own around it
(its own prefix directory, no system paths)."""

from __future__ import annotations

import os
from pathlib import Path

#: The dynamic modules docs/proxy-nginx.conf needs (Debian's libnginx-mod-http-lua), which
#: Debian's own nginx.conf loads from /etc/nginx/modules-enabled/.
NGINX_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so")


def absent_modules() -> list[str]:
    """The modules of :data:`NGINX_MODULES` that are not installed."""
    return [module for module in NGINX_MODULES if not os.path.exists(module)]


def fill_template(text: str, listen: str, master: str, auth_cache: Path) -> str:
    """``docs/proxy-nginx.conf`` with its placeholders filled in, as docs/proxy.md says."""
    return text.replace("@LISTEN@", listen).replace("@MASTER@", master).replace("@AUTH_CACHE@", str(auth_cache))


def main_conf(prefix: Path, site: Path, *, access_log: bool = True, error_level: str = "error",
              connections: int = 256) -> str:
    """A main ``nginx.conf`` that loads the modules, keeps everything under ``prefix`` and
    includes ``site`` in its ``http {}`` block."""
    temps = "".join(f"    {kind}_temp_path {prefix}/tmp/{kind};\n" for kind in ("proxy", "fastcgi", "uwsgi", "scgi"))
    return ("".join(f"load_module {module};\n" for module in NGINX_MODULES)
            + ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log {error_level};\n"
            + f"events {{ worker_connections {connections}; }}\n"
            + "http {\n"
            + (f"    access_log {prefix}/access.log;\n" if access_log else "    access_log off;\n")
            + f"    client_body_temp_path {prefix}/tmp/body;\n" + temps
            + f"    include {site};\n}}\n")
