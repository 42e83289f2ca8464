"""The image's health check: Jupyter answers GET <BASE_URL>api/status on port 8888."""

import os
import sys
import urllib.request

base_url = "/" + os.environ.get("BASE_URL", "/").strip("/")
url = "http://127.0.0.1:8888" + base_url.rstrip("/") + "/api/status"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
