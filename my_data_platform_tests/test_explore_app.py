"""`mdp explore` serves a dataset version in the FiftyOne app, in a real browser (headless
Chromium), on the bundled mongod it starts itself."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from my_data_platform.core.exploration import dataset_name
from my_data_platform.core.mongo import _read_state, stop_mongod
from my_data_platform.core.objectstore import LocalObjectStore
from my_data_platform.core.versioning import LocalVersionStore
from my_data_platform_tests.conftest import free_port
from my_data_platform_tests.defs.exploration.tiny import publish_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
N = 12


def _graphql(url: str, query: str) -> dict:
    req = urllib.request.Request(
        f"{url}graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_mdp_explore_serves_the_samples_in_a_browser(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = LocalObjectStore(data / "lake")
    commit = publish_tiny_dataset(store, LocalVersionStore(data / "versions", "datasets"), N)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIFTYONE_", "MDP_"))}
    env.update(MDP_DATA_DIR=str(data), DAGSTER_HOME=str(data / "dagster_home"))
    port = free_port()
    log_path = tmp_path / "explore.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "my_data_platform.cli", "explore", f"tiny-{N}", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"^FiftyOne app: (http://\S+)$", log_path.read_text(), re.M)):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        url = m.group(1)
        assert url == f"http://127.0.0.1:{port}/"

        # the server answers for this dataset version with all its samples and their images
        name = dataset_name(commit)
        got = _graphql(url, f'{{ dataset(name: "{name}") {{ name estimatedSampleCount }} }}')
        assert got["data"]["dataset"] == {"name": name, "estimatedSampleCount": N}
        image = store.uri("landing/photos/00000001.jpg")
        media = f"{url}media?filepath={urllib.parse.quote(image)}"
        with urllib.request.urlopen(media, timeout=10) as r:
            assert r.read() == Path(image).read_bytes()

        shot = tmp_path / "fiftyone-app.png"
        common = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1600,1000",
        ]  # fmt: skip
        # a loaded machine can need more (virtual) time before the grid has rendered: retry
        for budget in (15_000, 40_000, 90_000):
            budget_arg = f"--virtual-time-budget={budget}"
            dom = subprocess.run(
                [*common, budget_arg, "--dump-dom", url], capture_output=True, text=True,
                timeout=180,
            ).stdout  # fmt: skip
            count = re.search(r'data-cy="entry-count-part"[^>]*>([\d,]+)</span> samples', dom)
            if f'value="{name}"' in dom and count:
                break
        # the dataset selector shows this version, and the grid counted its samples
        assert f'value="{name}"' in dom, dom[-2000:]
        assert count and int(count.group(1).replace(",", "")) == N, dom[-2000:]
        subprocess.run(
            [*common, budget_arg, f"--screenshot={shot}", url], capture_output=True, timeout=180
        )
        assert shot.exists() and shot.stat().st_size > 10_000
        out = ROOT / "data" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out / "fiftyone-app.png")  # kept for people (data/ is ignored)
    finally:
        # FiftyOne runs its server in a process group of its own: collect it before stopping
        kids = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.terminate()  # mdp closes the app on SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        for kid in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                kid.kill()
        log.close()
        state = _read_state(data / "fiftyone")
        assert stop_mongod(data / "fiftyone"), "mdp explore did not use the bundled mongod"
        assert state is not None and state["dbpath"] == str((data / "fiftyone" / "data").resolve())
