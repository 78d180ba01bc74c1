"""The demo page in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

``make test`` installs chromium with apt-get when it is missing, so this test never skips: without the
browser it fails, naming the package.
"""
from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest
import uvicorn
from media_clips import unlike_clips, write_clip
from serving_helpers import demo_statistics_predictor, untrained_checkpoint

from minigpt4.serving.familiarity import LIMIT
from minigpt4.serving.predictor import Example, Predictor, load_predict_config
from minigpt4.serving.web import create_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--disable-default-apps"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: `apt-get install chromium` (make test does this)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app) -> Iterator[str]:
    """``app`` under uvicorn on a free 127.0.0.1 port, in a thread; yields its base URL."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@contextmanager
def browser_page(base: str) -> Iterator:
    """The page at ``base`` in headless Chromium, once its examples are listed; on exit, checks that it reached
    nothing outside the server."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.requests = []
        page.on("request", lambda r: page.requests.append(r.url))
        page.goto(base + "/")
        # A CSS wait, not wait_for_function: the page's CSP forbids eval, which Playwright's polling needs.
        page.wait_for_selector("#example option:nth-child(2)", state="attached")
        yield page
        browser.close()
    outside = [u for u in page.requests if not u.startswith(base + "/") and not u.startswith("data:")]
    assert not outside, f"the page reached outside the server: {outside}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    checkpoint = untrained_checkpoint(root / "ckpt")
    (root / "examples").mkdir()
    example = write_clip(root / "examples" / "astronaut.mp4", seconds=1.0, seed=3)
    predictor = Predictor(load_predict_config(None, [f"model.checkpoint={checkpoint}"]))
    app = create_app(predictor, [Example("astronaut.mp4", example, "happy", "What a view from up here")],
                     upload_dir=root / "uploads")
    with running(app) as base:
        yield base, predictor, root


@pytest.fixture()
def page(server):
    with browser_page(server[0]) as page:
        yield page


def bars(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#chart g.bar", "gs => gs.map(g => ({label: g.dataset.label, p: Number(g.dataset.p), "
        "width: Number(g.querySelector('rect.fill').getAttribute('width')), "
        "fill: g.querySelector('rect.fill').getAttribute('fill')}))")


def test_upload_shows_label_chart_face_and_waveform(server, page, tmp_path):
    base, predictor, root = server
    clip = write_clip(tmp_path / "upload me.mp4", seconds=1.2, seed=1)
    page.set_input_files("#clip", str(clip))
    page.fill("#transcript", "I can't believe you did that")
    page.click("#run")
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    label = page.text_content("#label")
    expected = predictor.predict(clip, transcript="I can't believe you did that")
    assert label == ", ".join(expected["labels"])

    drawn = bars(page)
    assert [b["label"] for b in drawn] == list(predictor.label_set.labels)
    assert [b["p"] for b in drawn] == pytest.approx(list(expected["probabilities"].values()), abs=1e-6)
    widest = max(drawn, key=lambda b: b["width"])
    assert widest["label"] == expected["labels"][0] and widest["fill"] == "#3558c8"
    assert all(b["width"] >= 1 for b in drawn)
    assert page.get_attribute("#wave path", "d").count("M") > 10
    assert page.eval_on_selector("#frame img", "img => img.complete && img.naturalWidth > 0")
    assert page.locator("#face img, #face .empty").count() == 1
    assert "upload_me" in page.inner_text("#meta")

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert not any((root / "uploads").iterdir())


def test_example_clip_and_a_refused_upload(server, page, tmp_path):
    page.select_option("#example", "astronaut.mp4")
    assert page.input_value("#transcript") == "What a view from up here"
    page.click("#run")
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    assert page.text_content("#label") in server[1].label_set.labels
    assert len(bars(page)) == len(server[1].label_set.labels)

    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all\n" * 10)
    page.set_input_files("#clip", str(fake))
    page.click("#run")
    page.wait_for_selector("#error", state="visible")
    assert page.inner_text("#error").startswith("415:")


def test_a_clip_unlike_the_training_data_is_flagged_on_the_page(server, page, tmp_path):
    base, predictor, root = server
    norms = predictor.model.feature_norm
    saved = {k: v.clone() for k, v in norms.state_dict().items()}
    norms.load_state_dict(demo_statistics_predictor().model.feature_norm.state_dict())  # the demo's statistics
    try:
        page.set_input_files("#clip", str(unlike_clips(tmp_path)["noise"]))
        page.click("#run")
        page.wait_for_selector("#ood", state="visible", timeout=120_000)
        text = page.inner_text("#ood")
        assert text.startswith("Unlike the training data: ") and f"the limit is {LIMIT}" in text, text
    finally:
        norms.load_state_dict(saved)
    page.set_input_files("#clip", str(write_clip(tmp_path / "again.mp4", seconds=1.0, seed=2)))
    page.click("#run")  # statistics unset again: distance unknown, no warning
    page.wait_for_selector("#ood", state="hidden", timeout=120_000)
