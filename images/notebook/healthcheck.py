"""The image's health check: Jupyter answers on port 8888.

The master's mode: GET <BASE_URL>api/status with the container's access secret (which the
health check finds in the container's environment). Hub mode (``JUPYTERHUB_API_TOKEN`` set):
GET <JUPYTERHUB_SERVICE_PREFIX>api, the version, which the single-user server answers
without a sign-in (its status needs the hub's)."""

import os
import sys
import urllib.request

if os.environ.get("JUPYTERHUB_API_TOKEN"):
    base_url = "/" + os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").strip("/")
    url = "http://127.0.0.1:8888" + base_url.rstrip("/") + "/api"
    headers = {}
else:
    base_url = "/" + os.environ.get("BASE_URL", "/").strip("/")
    url = "http://127.0.0.1:8888" + base_url.rstrip("/") + "/api/status"
    headers = {"X-Ipynbsrv-Access": os.environ.get("IPYNBSRV_ACCESS_SECRET", "")}
request = urllib.request.Request(url, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
