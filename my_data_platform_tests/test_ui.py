"""The Dagster UI renders the asset graph in a real browser (headless Chromium)."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from my_data_platform_tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_dagster_ui_shows_the_asset_graph(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "dagster_home").mkdir(parents=True)
    env = {**os.environ, "MDP_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home")}
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-2000:]
            time.sleep(1)
        shot = tmp_path / "asset-graph.png"
        common = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1600,1000",
            "--virtual-time-budget=20000",
        ]  # fmt: skip
        dom = subprocess.run(
            [*common, "--dump-dom", f"{url}/asset-groups"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        subprocess.run([*common, f"--screenshot={shot}", f"{url}/asset-groups"],
                       capture_output=True, timeout=120)  # fmt: skip
        # the lineage page lists the project's groups, so the graph was loaded and rendered
        for group in ("sources", "lake", "warehouse", "features", "datasets"):
            assert group in dom, f"group {group!r} not rendered"
        assert shot.exists() and shot.stat().st_size > 10_000
        out = ROOT / "data" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out / "asset-graph.png")  # kept for people (data/ is ignored)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
