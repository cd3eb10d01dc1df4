"""Container health check (the Dockerfile's HEALTHCHECK): exit 0 when Streamlit answers /_stcore/health.

Standard library only, so it runs in a second or less and needs no curl in the image.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def health_url(env: dict[str, str] | None = None) -> str:
    """The health endpoint of the app in this container, from Streamlit's own settings."""
    env = dict(os.environ) if env is None else env
    port = env.get("STREAMLIT_SERVER_PORT") or "8501"
    base = (env.get("STREAMLIT_SERVER_BASE_URL_PATH") or "").strip("/")
    return f"http://127.0.0.1:{port}/{base + '/' if base else ''}_stcore/health"


def main() -> int:
    url = health_url()
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            body = response.read(100).decode(errors="replace").strip()
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if body != "ok":
        print(f"unhealthy: {url} answered {body!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
