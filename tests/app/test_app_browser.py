"""The web demo end to end in headless Chromium: upload, type classes, submit, check the overlay.

Needs gradio, playwright and a Chromium binary (Debian: ``apt-get install chromium``; or set
FGASEG_CHROMIUM); skipped cleanly when any is missing. Every request that does not go to the
local server is blocked and counted, so the test also proves the demo works offline.
"""

import io
import os
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"]


def _chromium() -> str:
    for candidate in (os.environ.get("FGASEG_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.skip("no Chromium binary (apt-get install chromium, or set FGASEG_CHROMIUM)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served_app():
    pytest.importorskip("gradio")
    from fgaseg.app.ui import build_app, launch
    from fgaseg.predict.reference import ColourSegmenter

    demo = build_app(ColourSegmenter(), default_classes="")
    port = _free_port()
    launch(demo, "127.0.0.1", port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def page(served_app):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.blocked = []

        def only_local(route):
            if route.request.url.startswith(served_app):
                route.continue_()
            else:
                page.blocked.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.set_default_timeout(30_000)
        page.goto(served_app)
        yield page
        browser.close()


def _submit(page, image_path, classes):
    page.locator("#fgaseg-input input[type=file]").set_input_files(str(image_path))
    page.locator("#fgaseg-input img").first.wait_for(state="visible")
    box = page.locator("#fgaseg-classes textarea")
    box.fill(classes)
    page.locator("#fgaseg-submit").click()


def test_upload_classes_and_get_a_real_overlay(page, served_app, tmp_path):
    from fgaseg.predict.palette import make_palette

    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0)
    pixels[:, 32:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "halves.png")
    _submit(page, tmp_path / "halves.png", "red, blue, green")

    result_image = page.locator("#fgaseg-overlay img").first
    result_image.wait_for(state="visible")
    source = result_image.get_attribute("src")
    body = page.request.get(source).body() if not source.startswith("data:") else None
    if body is None:
        import base64

        body = base64.b64decode(source.split(",", 1)[1])
    overlay = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))

    # the image keeps its size in the top-left corner; the legend panel is added on the right
    # (small images get a slightly taller canvas, white below the image, so the legend fits)
    assert overlay.shape[0] >= 48 and overlay.shape[1] > 64
    assert (overlay[48:, :64] == 255).all()
    picture = overlay[:48, :64].astype(int)
    assert np.abs(picture - pixels).max() > 40  # colours were blended in
    palette = make_palette(3).astype(int)
    expected_left = (np.array([255, 0, 0]) + palette[0]) / 2  # 50 % opacity
    expected_right = (np.array([0, 0, 255]) + palette[1]) / 2
    assert np.abs(picture[:, :30] - expected_left).max() <= 2
    assert np.abs(picture[:, 34:] - expected_right).max() <= 2
    legend_colours = {tuple(p) for p in overlay[:, 64:].reshape(-1, 3).astype(int)}
    assert tuple(palette[0]) in legend_colours and tuple(palette[1]) in legend_colours
    assert tuple(palette[2]) not in legend_colours  # "green" covers nothing

    table = page.locator("#fgaseg-legend")
    table.locator("text=50.0%").first.wait_for()
    assert "red" in table.inner_text() and "green" in table.inner_text()
    assert page.blocked == [], f"the page tried to reach the internet: {page.blocked[:3]}"


def test_bad_class_list_shows_one_line_error(page, tmp_path):
    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "red.png")
    _submit(page, tmp_path / "red.png", "red,,blue")
    page.get_by_text("is blank").first.wait_for()
