"""The annotate page in headless Chromium (Playwright): mark patches, trace a crack, label photos from the
keyboard, be told when another page saved first, reload and find the work; then the written labels feed
``crackseg label`` (weak-label gate) and ``crackseg tune``.

Skipped, with the reason, without Playwright for Python (``pip install playwright``) or a Chromium
(``/usr/bin/chromium``, ``chromium`` on PATH, or the executable named by ``CRACKSEG_CHROMIUM``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("skimage.graph", reason="crackseg annotate needs scikit-image (pip install 'crackseg[annotate]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                                                              "(pip install playwright)")

from crackseg.apps.annotate.command import open_server  # noqa: E402
from crackseg.base.io import read_mask  # noqa: E402
from crackseg.data.weak_labels import read_weak_labels_csv  # noqa: E402
from test_annotate import H, P, W, check_labels_feed_the_pipeline, crack_points, crack_y, write_photos  # noqa: E402


def chromium() -> str | None:
    named = os.environ.get("CRACKSEG_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (/usr/bin/chromium, chromium on PATH, "
                                                         "or CRACKSEG_CHROMIUM=/path/to/chrome)")


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        except sync_api.Error as exc:
            pytest.skip(f"Playwright cannot start {CHROMIUM}: {str(exc).splitlines()[0]}")
        yield b
        b.close()


class Page:
    """One browser tab on the annotate page, in photo coordinates."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1100, "height": 760})
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.open(url)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.evaluate("window.annotate.ready")
        self.idle()

    def reload(self, stem: str) -> None:
        """Reload the page (F5) on photo ``stem``."""
        self.page.evaluate("(stem) => { location.hash = '#' + stem; }", stem)
        self.page.reload()
        self.page.evaluate("window.annotate.ready")
        self.idle()

    def idle(self) -> None:
        self.page.evaluate("window.annotate.idle()")

    def at(self, x: float, y: float) -> tuple[float, float]:
        cx, cy = self.page.evaluate("([x, y]) => window.annotate.toClient(x, y)", [x, y])
        return cx, cy

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.at(x, y))

    def drag(self, points: list[tuple[float, float]]) -> None:
        self.page.mouse.move(*self.at(*points[0]))
        self.page.mouse.down()
        for p in points[1:]:
            self.page.mouse.move(*self.at(*p), steps=4)
        self.page.mouse.up()

    def key(self, key: str) -> None:
        self.page.keyboard.press(key)

    def shown(self) -> dict[str, Any]:
        """What the page shows: the photo, its label and crack patches, whether a mask is drawn, the message."""
        return self.page.evaluate("""() => { const S = window.annotate.state; return {
            stem: S.photos[S.index].stem, image: S.image, rev: S.photo.rev, overlay: !!S.overlay,
            marked: [...S.marked].map(k => k.split(',').map(Number)).sort((a, b) => a[1] - b[1] || a[0] - b[0]),
            where: document.getElementById('where').textContent,
            progress: document.getElementById('progress').textContent,
            message: document.getElementById('message').hidden ? '' : document.getElementById('message').textContent};
        }""")


def saved(labels: Path, stem: str) -> dict[str, Any]:
    return json.loads((labels / "annotations" / f"{stem}.json").read_text())


def test_the_page_marks_traces_reloads_and_its_labels_feed_label_and_tune(browser, tmp_path):
    photos = write_photos(tmp_path / "photos")
    labels = tmp_path / "labels"
    server = open_server(photos, labels, patch_size=P, port=0)
    server.start()
    try:
        page = Page(browser, server.url)
        assert page.shown()["where"] == "1 / 3 · p0.png" and page.shown()["progress"] == "0 of 3 photos done"

        # patches: a click marks one, a drag marks a row, a click on a marked one unmarks it
        page.click(48, 48)
        page.drag([(10, 80), (80, 80), (150, 80)])
        page.click(48, 48)
        page.idle()
        row = [[x, 64] for x in range(0, W, P)]
        assert saved(labels, "p0")["patches"] == row and saved(labels, "p0")["image"] == "crack"
        assert saved(labels, "p0")["rev"] == 3  # three requests: click, drag, click
        weak = read_weak_labels_csv(labels / "weak_labels.csv")["p0"]
        assert sorted([p.x, p.y] for p in weak.patches if p.crack) == row and len(weak.patches) == 20
        assert page.shown()["progress"] == "1 of 3 photos done"

        # tracing: a few clicks along the crack, the mask follows it
        page.key("t")
        for x, y in crack_points(0, step=50):
            page.click(x, y)
        page.key("Escape")
        page.idle()
        mask = read_mask(labels / "masks" / "p0.png", (H, W))
        xs = np.arange(2, W - 3)
        assert mask[np.round(crack_y(xs, 0)).astype(int), xs].mean() > 0.9 and mask.sum() < 6 * len(xs)
        assert page.shown()["overlay"]
        page.key("z")  # undo the last stretch of the trace
        page.idle()
        assert 0 < read_mask(labels / "masks" / "p0.png", (H, W)).sum() < mask.sum()

        # keyboard: next photo, no crack (which moves on to the next), skip the last one
        page.key("ArrowRight")
        page.idle()
        page.key("n")
        page.idle()
        assert saved(labels, "p1")["image"] == "no_crack" and page.shown()["where"] == "3 / 3 · p2.png"
        page.key("s")
        page.idle()
        assert saved(labels, "p2")["image"] == "skip" and page.shown()["progress"] == "3 of 3 photos done"

        # a second page on the same photo, left behind by the first page's change, is told to reload
        other = Page(browser, server.url + "#p1")
        assert other.shown()["stem"] == "p1" and other.shown()["image"] == "no_crack"
        page.key("ArrowLeft")
        page.idle()
        page.key("c")  # p1 is crack after all: the first page saves it
        page.idle()
        other.key("p")
        other.click(100, 100)  # the second page still shows p1 as no crack: its change is refused
        other.idle()
        assert "changed in another page" in other.shown()["message"]
        assert other.shown()["image"] == "crack" and other.shown()["marked"] == []  # it now shows what was saved
        assert saved(labels, "p1")["image"] == "crack" and saved(labels, "p1")["patches"] == []
        other.click(100, 100)  # and its next change goes through
        other.idle()
        assert saved(labels, "p1")["patches"] == [[96, 96]]

        # reloading shows the saved work
        page.reload("p0")
        shown = page.shown()
        assert shown["stem"] == "p0" and shown["marked"] == row and shown["overlay"] and shown["image"] == "crack"
        png = page.page.screenshot(path=str(tmp_path / "annotate.png"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert not page.errors and not other.errors
    finally:
        server.shutdown()
        server.server_close()
    check_labels_feed_the_pipeline(photos, labels, tmp_path)


def test_a_page_without_the_token_says_how_to_open_it(browser, tmp_path):
    photos = write_photos(tmp_path / "photos", n=1)
    server = open_server(photos, tmp_path / "labels", patch_size=P, port=0)
    server.start()
    try:
        page = browser.new_page()
        response = page.goto(server.url.split("?")[0])
        assert response is not None and response.status == 403
        assert "token" in page.content()
    finally:
        server.shutdown()
        server.server_close()
