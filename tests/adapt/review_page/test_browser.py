"""A real headless Chromium works the review page; the journal holds exactly what was done after each step.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (`.ci/run` installs both). Without
them the test skips, unless ``SAM3_ADAPT_REQUIRE_BROWSER`` is set (as in CI), where it fails. With
``SAM3_ADAPT_SAVE_FIGURES=1`` the screenshot also goes to ``examples/figures/review_page.png``.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy.ndimage import distance_transform_edt

from sam3_adapt.engine.journal import Journal
from sam3_adapt.review_page.session import read_round

ROOT = Path(__file__).parents[3]


def browser_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    if os.environ.get("SAM3_ADAPT_REQUIRE_BROWSER"):
        pytest.fail("no chromium / chromedriver found, and SAM3_ADAPT_REQUIRE_BROWSER is set")
    pytest.skip("no chromium / chromedriver (apt-get install chromium chromium-driver)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder, port, log):
    command = [sys.executable, "-m", "sam3_adapt.cli", "review", str(folder), "--port", str(port)]
    server = subprocess.Popen([*command, "--actor", "tester"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, Path(log.name).read_text()
        try:
            state = httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=2).json()
            if state["model_ready"]:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise AssertionError("the review server did not start")


def closed_pairs(folder):
    """Pairs a person closed (not undone)."""
    journal = Journal(folder / "journal.sqlite", read_round(folder).run["run_id"])
    closed = journal.reviewed_pairs()
    journal.close()
    return closed


def person(folder, undone=False):
    journal = Journal(folder / "journal.sqlite", read_round(folder).run["run_id"])
    found = [(d.kind, d.instance) for d in journal.decisions(undone=undone) if d.actor_kind == "human"]
    journal.close()
    return found


def p95(values):
    return float(np.percentile(values, 95)), float(np.percentile(values, 50))


@pytest.mark.slow
def test_a_person_works_the_queue_in_chromium(round_copy, tmp_path):
    browser, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    folder, _ = round_copy
    files = read_round(folder)
    truth = json.loads((Path(files.run["settings"]["pool"]).parent / "annotations.json").read_text())
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    server = start_server(folder, port, log)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,960"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    wait = WebDriverWait(driver, 30)

    def shown():
        return driver.find_element(By.TAG_NAME, "body").get_attribute("data-shown") or ""

    def after(step, before):
        wait.until(lambda _: shown() and shown() != before)
        return int(shown().split(":")[0])

    def key(letter):
        before = shown()
        driver.find_element(By.TAG_NAME, "body").send_keys(letter)
        return after(letter, before)

    def at_pixel(x, y):
        """Canvas offset (from its centre, as Selenium wants) of image pixel (x, y)."""
        canvas = driver.find_element(By.ID, "view")
        pair = files.queue[int(shown().split(":")[0])]
        scale = canvas.size["width"] / pair.width
        return (
            canvas,
            (x + 0.5) * scale - canvas.size["width"] / 2,
            (y + 0.5) * scale - canvas.size["height"] / 2,
        )

    def drag(box):
        before = shown()
        canvas, x0, y0 = at_pixel(box[0], box[1])
        _, x1, y1 = at_pixel(box[2], box[3])
        chain = ActionChains(driver).move_to_element_with_offset(canvas, int(x0), int(y0)).click_and_hold()
        chain.move_by_offset(int(x1 - x0), int(y1 - y0)).release().perform()
        return after("drag", before)

    try:
        driver.get(f"http://127.0.0.1:{port}/")
        index = after("load", "")
        assert index == 0 and person(folder) == []

        # 1. Accept a pair with the keyboard: an accept per instance, then exhaustive.
        first = files.queue[index]
        index = key("a")
        assert person(folder) == [("accept", k) for k in range(len(first.instances))] + [("exhaustive", None)]
        written = person(folder)

        # 2. Reject an instance by clicking it (a pixel of its mask that no other instance covers).
        while not files.queue[index].instances:
            index = key("s")
        pair = files.queue[index]
        masks = [mask_utils.decode(inst["segmentation"]).astype(bool) for inst in pair.instances]
        only = masks[0] & ~np.any(masks[1:], axis=0) if len(masks) > 1 else masks[0]
        y, x = np.unravel_index(np.argmax(distance_transform_edt(only)), only.shape)
        canvas, dx, dy = at_pixel(x, y)
        before = shown()
        ActionChains(driver).move_to_element_with_offset(canvas, int(dx), int(dy)).click().perform()
        assert after("click", before) == index
        assert person(folder) == [*written, ("reject", 0)]

        # 3. Mark the pair absent.
        index = key("x")
        assert person(folder) == [*written, ("reject", 0), ("absent", None)]
        written = person(folder)

        # 4. Add an instance by dragging a box around a shape of the image.
        pair = files.queue[index]
        image_id = next(i["id"] for i in truth["images"] if i["file_name"] == pair.file_name)
        x, y, w, h = next(a["bbox"] for a in truth["annotations"] if a["image_id"] == image_id)
        assert drag([x - 2, y - 2, x + w + 2, y + h + 2]) == index
        assert person(folder) == [*written, ("add", None)]
        assert "added from a box" in driver.find_element(By.ID, "instances").text

        # 8. The screenshot: proposals, the instance just added, the shortcuts.
        driver.save_screenshot(str(tmp_path / "review_page.png"))
        if os.environ.get("SAM3_ADAPT_SAVE_FIGURES"):
            shutil.copy(tmp_path / "review_page.png", ROOT / "examples" / "figures" / "review_page.png")

        # 5. Undo it: the add is taken back (an undo row names it), the page shows the pair without it.
        assert key("u") == index
        assert person(folder) == written and person(folder, undone=True) == [
            *written,
            ("add", None),
            ("undo", None),
        ]
        assert "added from a box" not in driver.find_element(By.ID, "instances").text

        # 6. Reload: the page opens at the first pair nobody decided, and nothing was written.
        driver.refresh()
        resumed = after("reload", "")
        closed = closed_pairs(folder)
        assert resumed == next(k for k, r in enumerate(files.queue) if (r.file_name, r.phrase) not in closed)
        assert person(folder) == written

        # Latency: keys that bring the next pair (skips, then accepts undone again), and box drags.
        for _ in range(15):
            key("s")
        for _ in range(5):
            key("a")
            key("u")
        index = int(shown().split(":")[0])
        pair = files.queue[index]
        for k in range(8):
            drag([10 + 4 * k, 10 + 3 * k, 60 + 4 * k, 70 + 2 * k])
        timings = driver.execute_script("return window.reviewTimings")
        assert person(folder) == [*written, *[("add", None)] * 8]
        next_ms = [ms for _, ms in timings["next"]]
        box_ms = [ms for _, ms in timings["box"]]
        report = {
            "next_pair_ms": {"n": len(next_ms), "p95": p95(next_ms)[0], "p50": p95(next_ms)[1]},
            "box_to_mask_ms": {"n": len(box_ms), "p95": p95(box_ms)[0], "p50": p95(box_ms)[1]},
        }
        (tmp_path / "latency.json").write_text(json.dumps(report, indent=1))
        print("review page latency:", json.dumps(report))
        assert report["next_pair_ms"]["p95"] < 1500 and report["box_to_mask_ms"]["p95"] < 5000
    finally:
        driver.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_a_killed_server_resumes_at_the_right_pair_with_every_decision_kept(round_copy, tmp_path):
    folder, _ = round_copy
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "w") as log:
        server = start_server(folder, port, log)
        state = httpx.get(f"{url}/api/state").json()
        pair = httpx.get(f"{url}/api/pair/{state['index']}").json()
        body = {"index": pair["index"], "action": "absent", "version": pair["version"]}
        assert httpx.post(f"{url}/api/act", json=body).status_code == 200
        server.send_signal(signal.SIGKILL)  # between two decisions: no clean-up at all
        server.wait()
        server = start_server(folder, port, log)
        try:
            state = httpx.get(f"{url}/api/state").json()
            assert state["index"] == 1 and state["progress"]["done"] == 1
            pair = httpx.get(f"{url}/api/pair/1").json()
            body = {"index": 1, "action": "not_exhaustive", "version": pair["version"]}
            assert httpx.post(f"{url}/api/act", json=body).status_code == 200
            accepted = [("accept", inst["index"]) for inst in pair["instances"]]
            assert person(folder) == [("absent", None), *accepted, ("not_exhaustive", None)]
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait()
