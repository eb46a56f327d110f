"""The demo page in a real headless Chromium, against the real product started by `streamrec demo`.

`streamrec demo` (without --exit) starts the consumer and the API, streams a small simulated shop,
trains and publishes a model, then keeps running: exactly what a user opens /demo on. The browser picks
a shopper, clicks an item, and the recommendations must change (click -> POST /v1/events -> Kafka ->
consumer -> Redis -> new ranking). A screenshot is kept in test-artifacts/ (and docs/ for the README).
Ctrl-C (SIGINT) must then stop everything the demo started, cleanly.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tooling.devstack.processes import REPO_ROOT, child_env, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO_ROOT / "test-artifacts"
DEMO_READY_TIMEOUT_S = 240
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,860",
)


def ensure_chromium() -> None:
    """Install Debian's chromium + chromedriver when missing; skip only where that is impossible."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(
            "headless Chromium is not installed and cannot be (needs apt-get as root): "
            "apt-get install -y chromium chromium-driver"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"could not install Chromium ({' '.join(cmd)}): {done.stderr.strip()[-300:]}")
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "apt-get succeeded but chromium is still missing"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    ensure_chromium()
    pytest.importorskip("selenium", reason="pip install selenium (dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path, prefix='chrome-')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def running_demo(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, subprocess.Popen[str], Path]]:
    settings = settings.model_copy(
        update={
            "serving": settings.serving.model_copy(update={"port": free_port()}),
            "consumer": settings.consumer.model_copy(update={"metrics_port": free_port()}),
        }
    )
    out = tmp_path / "demo.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", "--dataset", "simulate", "--events", "2000"],
            cwd=REPO_ROOT,
            env=child_env(settings, {"COLUMNS": "160"}),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group, so teardown can clean up its children even if the demo cannot.
            start_new_session=True,
            # Ctrl-C as a terminal delivers it: a suite started as a background job (`cmd &` in a
            # script) passes SIGINT on ignored, and the demo would never see the test's Ctrl-C.
            preexec_fn=_default_sigint,
        )
    try:
        deadline = time.monotonic() + DEMO_READY_TIMEOUT_S
        while "press Ctrl-C" not in out.read_text():
            assert proc.poll() is None, f"demo exited with {proc.returncode}:\n{out.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"demo not ready in time:\n{out.read_text()[-4000:]}"
            time.sleep(0.5)
        yield settings, proc, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the demo started and could not stop


def _click_card(driver: Any, index: int) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        driver.find_elements(By.CSS_SELECTOR, "#recs .card")[index].click()
    except StaleElementReferenceException:
        return False  # re-rendered under us: WebDriverWait tries again
    return True


def cards(driver: Any) -> list[str]:
    # One script call reads the whole list atomically; the page re-renders it while refetching, so
    # element handles collected first can go stale before their attributes are read.
    items: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#recs .card')).map(c => c.dataset.item);"
    )
    return items


def test_click_in_the_browser_changes_recommendations(running_demo: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings, demo, out = running_demo
    wait = WebDriverWait(browser, 15, poll_frequency=0.1)
    # The printed URL carries the run's ingest key in its fragment, as a user would open it.
    found = re.search(r"demo page\s+(http://\S+/demo#key=\S+)", out.read_text())
    assert found, out.read_text()[-3000:]
    assert found.group(1).startswith(f"http://127.0.0.1:{settings.serving.port}/demo")
    browser.get(found.group(1))

    # Known shoppers are offered; pick the second one.
    chips = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#user-chips .chip"))
    assert len(chips) >= 2
    # The page shows the most recent shopper first; then we pick another one.
    wait.until(lambda d: f"recommendations for {chips[0].text}" in d.find_element(By.ID, "status").text)
    user = chips[1].text
    chips[1].click()
    # "Loading recommendations for ..." names the shopper too: wait for the loaded list's status.
    wait.until(
        lambda d: (
            (text := d.find_element(By.ID, "status").text).startswith("Loading") is False
            and f"recommendations for {user}" in text
        )
    )
    assert browser.find_element(By.CSS_SELECTOR, ".chip.active").text == user
    before = cards(browser)
    assert len(before) >= 5
    status = browser.find_element(By.ID, "status").text
    assert "model v" in status and "degraded" not in status
    wait.until(lambda d: d.find_element(By.ID, "st-model").text.startswith("v"))

    # Click an item lower in the list: a click event goes through the whole pipeline.
    clicked = before[4]
    wait.until(lambda d: _click_card(d, 4))
    WebDriverWait(browser, 10, poll_frequency=0.1).until(
        lambda d: "updated in" in d.find_element(By.ID, "status").text
    )
    after = cards(browser)
    assert after != before
    # The clicked item is not echoed back; "recently viewed" shows it instead.
    assert clicked not in after
    wait.until(
        lambda d: (
            clicked
            in d.execute_script(
                "return Array.from(document.querySelectorAll('#recent li')).map(l => l.dataset.item);"
            )
        )
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#recs .card.new, #recs .card.up"), (
        "changes not highlighted"
    )

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # Ctrl-C stops the consumer and the API the demo started, and the demo exits 0.
    demo.send_signal(signal.SIGINT)
    assert demo.wait(60) == 0, out.read_text()[-3000:]
    text = out.read_text()
    assert "stopping the consumer and the API" in text and "Traceback" not in text
    pids = [int(p) for p in re.findall(r"\(pid (\d+),", text)]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for log in Path(settings.devstack.dir, "logs").glob("demo-*.log"):
        assert "Traceback" not in log.read_text(), f"{log}:\n{log.read_text()[-2000:]}"
