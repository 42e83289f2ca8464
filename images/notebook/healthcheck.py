"""The image's health check: Jupyter answers GET <BASE_URL>api/status on port 8888 (with the
container's access secret, which the health check finds in the container's environment)."""

import os
import sys
import urllib.request

base_url = "/" + os.environ.get("BASE_URL", "/").strip("/")
url = "http://127.0.0.1:8888" + base_url.rstrip("/") + "/api/status"
request = urllib.request.Request(url, headers={"X-Ipynbsrv-Access": os.environ.get("IPYNBSRV_ACCESS_SECRET", "")})
try:
    with urllib.request.urlopen(request, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
