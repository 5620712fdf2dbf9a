"""The screenshot of ``crackseg annotate`` in the docs (docs/annotate.png), made in headless Chromium.

Six CFD photos (``../shared/datasets/cfd``; synthetic photos when it is absent) in a scratch folder, served
with ``--suggest ridge``; two photos are labelled first (no crack, skip), then on the first photo the page
marks the crack patches of its left half (the right half stays suggested: dashed) and traces the crack's
left part with four clicks. Needs Playwright for Python and a Chromium::

    .venv/bin/python benchmarks/annotate_screenshot.py                  # writes docs/annotate.png
    .venv/bin/python benchmarks/annotate_screenshot.py --out /tmp/a.png --chromium /usr/bin/chromium
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CFD = REPO.parent / "shared" / "datasets" / "cfd"
STEMS = ("001", "002", "003", "010", "020", "042")
PATCH = 64


def scratch_photos(folder: Path) -> dict[str, np.ndarray]:
    """Copy the photos into ``folder``; their crack masks by stem."""
    from crackseg.base.io import read_mask, write_png

    folder.mkdir(parents=True)
    masks = {}
    if (CFD / "images").is_dir():
        for stem in STEMS:
            shutil.copy2(CFD / "images" / f"{stem}.jpg", folder / f"{stem}.jpg")
            masks[stem] = read_mask(CFD / "masks" / f"{stem}.png")
        return masks
    sys.path.insert(0, str(REPO / "plugins"))
    from crackseg_datasets.synthetic import generate

    for i, stem in enumerate(STEMS):
        image, mask = generate(0, "test", i + 1, 320, 480, style="pavement", crack_free_fraction=0.0)
        write_png(folder / f"{stem}.png", image)
        masks[stem] = mask
    return masks


def trace_points(mask: np.ndarray, columns: list[int]) -> list[tuple[float, float]]:
    """Points on the crack: the mean crack row of each of ``columns`` that has crack pixels."""
    out = []
    for x in columns:
        rows = np.flatnonzero(mask[:, x])
        if rows.size:
            out.append((float(x), float(rows.mean())))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "annotate.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from crackseg.apps.annotate.command import open_server
    from crackseg.data.weak_labels import from_mask

    with tempfile.TemporaryDirectory(prefix="annotate-screenshot-") as tmp:
        masks = scratch_photos(Path(tmp) / "photos")
        server = open_server(Path(tmp) / "photos", Path(tmp) / "labels", patch_size=PATCH, port=0, suggest="ridge")
        store = server.api.store
        store.set_labels("010", 0, "no_crack", [])
        store.set_labels("020", 0, "skip", [])
        server.start()
        first = masks[STEMS[0]]
        h, w = first.shape
        crack = [(p.x, p.y) for p in from_mask(first, PATCH, min_crack_pixels=PATCH).patches if p.crack]
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 760}, device_scale_factor=1)
                page.goto(server.url + f"#{STEMS[0]}")
                page.evaluate("window.annotate.ready")
                page.evaluate("window.annotate.idle()")

                def click(x: float, y: float) -> None:
                    page.mouse.click(*page.evaluate("([x, y]) => window.annotate.toClient(x, y)", [x, y]))

                for x, y in crack:
                    if x < w // 2:
                        click(x + PATCH / 2, y + PATCH / 2)
                page.keyboard.press("t")
                for x, y in trace_points(first, [4, 70, 150, 230]):
                    click(x, y)
                page.keyboard.press("Escape")
                page.evaluate("window.annotate.idle()")
                page.mouse.move(*page.evaluate("([x, y]) => window.annotate.toClient(x, y)", [300, 250]))
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
            server.api.responses.close()
    print(f"wrote {args.out} ({w}x{h} photo, {len(crack)} crack patches at {PATCH} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
