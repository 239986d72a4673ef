"""The draw-a-digit page in a real headless Chromium (Playwright for Python, Debian's
``chromium``): digits drawn with mouse strokes on the canvas must be read correctly.

Skipped, with the reason, only when no Chromium binary is found (`.ci/run` installs Debian's
with apt-get). Set ``MNIST_BENCH_SCREENSHOT=results/serve_page.png`` to also save the
screenshot the README shows (the page after the last digit).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

from mnist_bench.serving import create_app, load_for_serving, running_server

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root in a container
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ANSWER_TIMEOUT_MS = 15_000
# What the README serves: the robust recipe's model, calibrated (the page names it).
SERVED_MODEL = Path(__file__).resolve().parents[1] / "results" / "robust" / "model_calibrated.keras"

# Strokes on the 280x280 pad, in canvas pixels: each digit is a list of strokes, each stroke a
# list of points the mouse moves through with the button held.
_ZERO = [
    (140 + 55 * math.sin(2 * math.pi * t / 24), 140 - 85 * math.cos(2 * math.pi * t / 24))
    for t in range(25)
]
DIGITS = {
    1: [[(140, 50), (140, 230)]],
    7: [[(80, 60), (200, 60), (115, 230)]],
    0: [_ZERO],
}


def _chromium() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.skip(f"no Chromium found (looked for {', '.join(CHROMIUM_CANDIDATES)})")


@pytest.fixture(scope="module")
def page_url():
    # What `mnist-bench serve results/robust/model_calibrated.keras` serves (LiteRT).
    predictor, info = load_for_serving(SERVED_MODEL)
    app = create_app(predictor.predict_proba, model_info=info)
    with running_server(app) as url:
        yield url


def _draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()


@pytest.mark.browser
@pytest.mark.network
def test_drawn_digits_are_read_in_chromium(page_url, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 760, "height": 620})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"failed: {req.url}"))
            page.goto(page_url, wait_until="load")
            assert page.locator("#digit").inner_text() == "–"
            page.wait_for_function("document.getElementById('model').dataset.calibrated")
            shown = page.locator("#model").inner_text()
            assert "robust recipe" in shown and "calibrated probabilities (temperature" in shown
            requests = 0
            for digit, strokes in DIGITS.items():
                page.click("#clear")
                assert page.locator("#digit").get_attribute("data-state") == "idle"
                _draw(page, strokes)
                requests += len(strokes)
                page.wait_for_function(
                    f"document.getElementById('digit').dataset.requests === '{requests}'",
                    timeout=ANSWER_TIMEOUT_MS,
                )
                assert page.locator("#digit").get_attribute("data-state") == "done"
                assert page.locator("#digit").inner_text() == str(digit), digit
                assert page.locator("#bars li.top .d").inner_text() == str(digit)
                top_bar = page.locator("#bars li.top .fill").bounding_box()
                track = page.locator("#bars li.top .track").bounding_box()
                assert top_bar["width"] > 0.5 * track["width"]  # the bar shows p > 0.5
                assert "litert" in page.locator("#status").inner_text()
            assert errors == []
            _maybe_screenshot(page, tmp_path)
        finally:
            browser.close()


def _maybe_screenshot(page, tmp_path: Path) -> None:
    """Save the page to $MNIST_BENCH_SCREENSHOT (atomically) when set."""
    target = os.environ.get("MNIST_BENCH_SCREENSHOT")
    if not target:
        return
    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(shot, target)
