"""/docs renders in headless Chromium with every outside host unreachable: the Swagger UI assets are served locally."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_serve_process import Server


def test_swagger_ui_renders_offline(popular_run, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian `chromium` is not installed (apt-get install -y chromium; .ci/run installs it)")
    server = Server(popular_run, tmp_path / "fb.sqlite", tmp_path / "server.log")
    try:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no CDN can answer
                 "--virtual-time-budget=10000", "--dump-dom"]
        for page, marker in (("/docs", "opblock-summary-path"), ("/redoc", "/recommend")):
            dom = subprocess.run([exe, *flags, f"{server.url}{page}"], capture_output=True, text=True, timeout=120)
            assert dom.returncode == 0, dom.stderr[-2000:]
            assert marker in dom.stdout, (page, dom.stdout[-2000:])
            if page == "/docs":
                assert 'data-path="/recommend"' in dom.stdout or "/recommend" in dom.stdout
    finally:
        server.stop()
