"""``python -m hvc.app`` in a real browser: Chromium (Debian's chromium and chromium-driver)
driven by Selenium paints a blob on frame 0, propagates, waits for the progress bar, plays the
overlay and downloads the zip; its masks are ``python -m hvc.segment``'s for the prompt the page
saved, byte for byte (docs/app.md).

Needs /usr/bin/chromium, /usr/bin/chromedriver (``apt-get install chromium chromium-driver``)
and selenium (``pip install -r requirements-test.txt``); without them it skips with the reason,
and fails under CI=true. Nothing is downloaded at run time: the driver's path is given, so
Selenium Manager is not asked for one.

``HVC_APP_SCREENSHOT=docs/images/app.png`` also saves a screenshot of the page (a larger clip).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hvc.demo.video import render_video
from hvc.exports import Mp4Writer
from hvc.segment.__main__ import main as segment_main
from helpers.locations import IN_CI, REPO

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = os.environ.get("HVC_APP_SCREENSHOT")
# a small clip keeps the test short; the screenshot shows a larger one
FRAMES, H, W = (16, 240, 432) if SCREENSHOT else (8, 96, 160)
# Without the background-networking switches Chromium's own connections are refused on a closed network.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,760"]


def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, DRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -r requirements-test.txt)")
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true, so the browser test must run, not skip", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def app(tmp_path):
    """The tool serving the demo clip on a free port: (url, its folder, the clip, its ids)."""
    _browser_or_skip()  # before anything starts
    frames, labels = render_video(num_frames=FRAMES, height=H, width=W)
    clip = tmp_path / "demo.mp4"
    with Mp4Writer(clip, 12) as video:
        for f in frames:
            video.write(f)
    folder = tmp_path / "app"
    process = subprocess.Popen([sys.executable, "-m", "hvc.app", str(clip), "--output", str(folder), "--port", "0"],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        url, lines = None, []
        for line in process.stdout:  # the address is printed once the page is served
            lines.append(line)
            found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, "".join(lines)
        yield url, folder, clip, labels
    finally:
        process.terminate()
        process.wait(timeout=30)


def _driver(downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={downloads.parent / 'profile'}"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def _wait(what, timeout: float = 60, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what.__doc__ or what}")


def test_paint_propagate_play_and_download_in_chromium(app, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    url, folder, clip, labels = app
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _driver(downloads)
    try:
        driver.get(url)
        canvas = driver.find_element(By.ID, "view")
        _wait(lambda: driver.execute_script("return document.getElementById('view').width") == W)
        _wait(lambda: driver.execute_script("const i = images.get(0); return i && i.complete && i.naturalWidth"))
        # dabs of the brush inside each object of frame 0 (object 1 then 2, chosen in the page), and
        # one stroke, in the canvas's CSS pixels from its centre
        scale = driver.execute_script("return document.getElementById('view').getBoundingClientRect().width") / W
        radius = int(driver.find_element(By.ID, "brush").get_attribute("value"))
        at = lambda x, y: (int(round((x + 0.5 - W / 2) * scale)), int(round((y + 0.5 - H / 2) * scale)))  # noqa: E731
        for obj in (1, 2):
            Select(driver.find_element(By.ID, "object")).select_by_value(str(obj))
            inside = cv2.distanceTransform((labels[0] == obj).astype(np.uint8), cv2.DIST_L2, 3)
            points = [(x, y) for y in range(0, H, radius) for x in range(0, W, radius) if inside[y, x] > radius + 2]
            assert points, obj
            actions = ActionChains(driver)
            for x, y in points:
                actions.move_to_element_with_offset(canvas, *at(x, y)).click()
            actions.perform()
        x, y = points[0]
        ActionChains(driver).move_to_element_with_offset(canvas, *at(x, y)).click_and_hold() \
            .move_to_element_with_offset(canvas, *at(*points[-1])).release().perform()
        assert driver.find_element(By.ID, "promptlist").text == "0 (mask)"
        driver.find_element(By.ID, "run").click()
        _wait(lambda: driver.find_element(By.ID, "status").text.startswith("done")
              or driver.find_element(By.ID, "error").text, timeout=240)
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_element(By.ID, "status").text == f"done: {FRAMES} frames"
        progress = driver.find_element(By.ID, "progress")
        assert progress.get_attribute("value") == progress.get_attribute("max") == str(FRAMES)
        # the overlay plays: Chromium decodes the H.264 export
        _wait(lambda: driver.execute_script("return document.getElementById('overlay').readyState >= 1"), timeout=30)
        duration = driver.execute_script("return document.getElementById('overlay').duration")
        assert abs(duration - FRAMES / 12) < 0.2
        # the result over a later frame, then the download
        driver.execute_script("const s = document.getElementById('scrub'); s.value = arguments[0];"
                              "s.dispatchEvent(new Event('input'));", FRAMES // 2)
        _wait(lambda: driver.find_element(By.ID, "frameno").text == str(FRAMES // 2))
        if SCREENSHOT:
            time.sleep(0.5)
            driver.save_screenshot(str(Path(SCREENSHOT).resolve()))
        driver.find_element(By.ID, "download").click()
        zipped = _wait(lambda: [p for p in downloads.glob("*.zip")], timeout=60)[0]
        # a correction on the frame shown: its result as the start, one dab of object 1, propagate again
        driver.find_element(By.ID, "fromresult").click()
        Select(driver.find_element(By.ID, "object")).select_by_value("1")
        ActionChains(driver).move_to_element_with_offset(canvas, *at(*points[0])).click().perform()
        assert driver.find_element(By.ID, "promptlist").text == f"0 (mask), {FRAMES // 2} (mask)"
        driver.execute_script("document.getElementById('status').textContent = ''")  # not the last run's "done"
        driver.find_element(By.ID, "run").click()
        _wait(lambda: driver.find_element(By.ID, "status").text in ("stopped", f"done: {FRAMES} frames")
              and not driver.find_element(By.ID, "run").get_attribute("disabled"), timeout=240)
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_element(By.ID, "status").text == f"done: {FRAMES} frames"
        assert sorted(p.name for p in (folder / "video-1" / "prompts").iterdir()) == ["0.png", f"{FRAMES // 2}.png"]
        # the corrected frame's result is the correction painted there
        corrected = folder / "video-1" / "results" / "masks" / f"{FRAMES // 2:05d}.png"
        correction = folder / "video-1" / "prompts" / f"{FRAMES // 2}.png"
        assert np.array_equal(np.asarray(Image.open(corrected)), np.asarray(Image.open(correction)))
    finally:
        driver.quit()

    # the prompt the page saved: both objects, painted inside them
    prompt = folder / "video-1" / "prompts" / "0.png"
    ids = np.asarray(Image.open(prompt))
    assert set(np.unique(ids)) == {0, 1, 2}
    for obj in (1, 2):  # each painted inside its object
        assert ((ids == obj) & (labels[0] == obj)).sum() > 0.8 * (ids == obj).sum() > 0
    # the same masks as the command line's, for that prompt, byte for byte
    reference = tmp_path / "reference"
    assert segment_main([str(clip), "--mask", str(prompt), "--output", str(reference)]) == 0
    with zipfile.ZipFile(zipped) as z:
        masks = sorted(n for n in z.namelist() if n.startswith("masks/"))
        assert masks == [f"masks/{t:05d}.png" for t in range(FRAMES)] and "overlay.mp4" in z.namelist()
        for name in masks:
            assert z.read(name) == (reference / name).read_bytes(), name
