"""Run the documentation's command blocks as written, in a scratch copy of the checkout, and time each one.

Every fenced ``bash`` block of README.md and of the documentation site's pages (``docs/**/*.md``, in the
order of ``mkdocs.yml``'s nav) is either run (its lines in order, in one shell, from the scratch folder:
a copy of the checkout's files with ``.venv`` linked and ``../shared`` beside it, as in a fresh clone) or
skipped for a stated reason (it needs a GPU, weights, data or a network that are not here, installs into
the environment, is a benchmark of its own, or serves a web page until Ctrl-C). Stand-ins are made first:
``photos/`` (three shipped CFD photos: "your photos"), ``new-photos/`` (two more), ``labels.csv`` (64-px patch
labels of ``photos/``, derived from their CFD masks: "your patch labels") and ``labels/`` (what a ``crackseg
annotate photos/ --out labels/`` session leaves when every photo's crack patches are clicked and its cracks
traced, saved through the annotate page's own store; the clicks and traces are the CFD masks). All blocks
share the scratch folder, so a block can use what an earlier one wrote (``runs/demo``); blocks that read a
compare grid's run folder run after the block that makes it, and a block identical to one already run is not
run twice.

A block's id is its file and its number in that file: ``README.md#2``, ``docs/tutorials/photos.md#1``.

    .venv/bin/python benchmarks/readme_commands.py                     # every runnable block (~30 min on 2 cores)
    .venv/bin/python benchmarks/readme_commands.py --list              # what would run or be skipped, and why
    .venv/bin/python benchmarks/readme_commands.py --block README.md#2 # one block (and nothing it depends on)
    .venv/bin/python benchmarks/readme_commands.py --block README.md --block docs/tutorials/photos.md  # files
    .venv/bin/python benchmarks/readme_commands.py --block 2           # README.md#2 (a bare number: the README)

Prints one table row per block (id, line, seconds, status) and exits 1 if a block failed.
:func:`blocks`, :func:`all_blocks` and :func:`commands` are also used by ``tests/test_readme.py``, which
checks every ``crackseg`` command of the README and the docs against the CLI without running it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: a block holding one of these is not run: (marker, why)
SKIP = [
    ("path/to/crack500", "needs the full Crack500 and CLIP ViT-L/14 weights (not shipped)"),
    ("torchrun", "needs several GPUs or nodes"),
    ("python benchmarks/", "a benchmark of its own (minutes to an hour; its table is in the docs)"),
    ("download.pytorch.org", "downloads torch from download.pytorch.org (an online machine; the scratch copy "
                             "shares the checkout's .venv)"),
    ("pip install -e", "installs a package into the environment (the scratch copy shares the checkout's .venv)"),
    ("crackseg annotate", "a web page that runs until Ctrl-C (tests/test_annotate_browser.py drives it)"),
]
#: lines (substring) skipped inside a block that otherwise runs: (marker, why)
SKIP_LINES = [("--preset paper", "the paper's setting needs a GPU, Crack500 and CLIP weights"),
              ("./dev test", "the test suite (CI runs it)")]
#: blocks that read what a later block writes run after it: (marker of the reader, marker of the writer)
AFTER = [("runs/paper-cpu-small/cells", "crackseg compare configs/paper/all.yaml --preset cpu-small"),
         ("crackseg report runs/paper-cpu-small", "crackseg compare configs/paper/all.yaml --preset cpu-small")]
#: the stand-ins for "your photos": CFD stems copied to photos/ (with patch labels in labels.csv) and new-photos/
PHOTOS, NEW_PHOTOS = ("001", "002", "003"), ("010", "011")


@dataclass
class Block:
    """A fenced bash block: its file (relative to the checkout), number in that file, first line, logical lines."""

    line: int
    lines: list[str]
    file: str = "README.md"
    index: int = 0

    @property
    def id(self) -> str:
        return f"{self.file}#{self.index}"

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def skip_reason(self) -> str:
        return next((why for marker, why in SKIP if marker in self.text), "")


def blocks(path: Path = README) -> list[Block]:
    """Every ```bash block of one Markdown file, its continuation lines (``\\``) joined."""
    out: list[Block] = []
    current: list[str] | None = None
    start = 0
    rel = path.resolve().relative_to(REPO).as_posix() if path.resolve().is_relative_to(REPO) else str(path)
    for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if current is None:
            if raw.strip() == "```bash":
                current, start = [], i + 1
            continue
        if raw.strip() == "```":
            out.append(Block(start, _join(current), rel, len(out) + 1))
            current = None
            continue
        current.append(raw)
    return out


def doc_files() -> list[Path]:
    """README.md, then the docs pages in the order of mkdocs.yml's nav, then any page the nav leaves out."""
    ordered: list[Path] = []
    try:
        import yaml

        nav = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8")).get("nav", [])
    except (OSError, ImportError, AttributeError):
        nav = []

    def walk(item: object) -> None:
        if isinstance(item, str) and item.endswith(".md"):
            ordered.append(DOCS / item)
        elif isinstance(item, dict):
            for v in item.values():
                walk(v)
        elif isinstance(item, list):
            for v in item:
                walk(v)

    walk(nav)
    pages = [p for p in ordered if p.is_file()]
    pages += sorted(p for p in DOCS.rglob("*.md") if p not in pages and "_hooks" not in p.parts)
    return [README, *pages]


def all_blocks() -> list[Block]:
    """The bash blocks of README.md and every docs page, in reading order."""
    return [b for f in doc_files() for b in blocks(f)]


def _join(lines: list[str]) -> list[str]:
    joined: list[str] = []
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    if buf:
        joined.append(buf)
    return [j for j in joined if j.strip()]


def commands(block: Block) -> list[list[str]]:
    """The ``crackseg`` commands of a block as argument lists (comments dropped)."""
    out = []
    for line in block.lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words and words[0] == "crackseg":
            out.append(words[1:])
    return out


def order(all_blocks: list[Block]) -> list[Block]:
    """Reading order, except that a block reading a compare folder follows the block writing it."""
    result = list(all_blocks)
    for reader, writer in AFTER:
        w = next((b for b in result if writer in b.text), None)
        readers = [b for b in result if reader in b.text and b is not w]
        for r in readers:
            if w is not None and result.index(r) < result.index(w):
                result.remove(r)
                result.insert(result.index(w) + 1, r)
    return result


def select(chosen: list[str] | None, blocks_in_order: list[Block]) -> list[Block]:
    """The blocks ``--block`` names: an id (``README.md#2``), a file (all its blocks) or a bare README number."""
    if not chosen:
        return blocks_in_order
    out = []
    for b in blocks_in_order:
        for c in chosen:
            c = f"README.md#{c}" if c.isdigit() else c
            if c in (b.id, b.file) or b.id.endswith("/" + c) or b.file.endswith("/" + c):
                out.append(b)
                break
    return out


def scratch(root: Path) -> Path:
    """A fresh-clone-like folder: the checkout's files (tracked and new, not ignored), ``.venv`` linked,
    ``../shared`` beside it, and the stand-ins ``photos/``, ``new-photos/``, ``labels.csv`` and ``labels/``."""
    work = root / "repo"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for f in listed:
        src = REPO / f
        if not src.is_file():  # deleted in the working tree
            continue
        dst = work / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    (work / ".venv").symlink_to(REPO / ".venv")
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (root / "shared").symlink_to(shared)
    cfd = shared / "datasets" / "cfd"
    for folder, stems in (("photos", PHOTOS), ("new-photos", NEW_PHOTOS)):
        (work / folder).mkdir()
        for stem in stems:
            if (cfd / "images" / f"{stem}.jpg").is_file():
                shutil.copy2(cfd / "images" / f"{stem}.jpg", work / folder / f"{stem}.jpg")
    if (cfd / "masks").is_dir():
        (work / "labels.csv").write_text(patch_labels_csv(cfd / "masks", PHOTOS))
        if any((work / "photos").iterdir()):
            annotate_session(work / "photos", work / "labels", cfd / "masks")
    return work


def patch_labels_csv(masks: Path, stems: tuple[str, ...], size: int = 64) -> str:
    """``stem,x,y,size,label`` rows of 64-px patch labels, derived from masks: a stand-in for a user's labels."""
    sys.path.insert(0, str(REPO))
    import crackseg

    rows = ["stem,x,y,size,label"]
    found = crackseg.images_by_stem(masks, what="mask")
    for stem in stems:
        mask = found.get(stem)
        if mask is None:
            continue
        for p in crackseg.weak_labels_from_mask(crackseg.read_mask(mask), size).patches:
            rows.append(f"{stem},{p.x},{p.y},{p.size},{'crack' if p.crack else 'no_crack'}")
    return "\n".join(rows) + "\n"


def annotate_session(photos: Path, out: Path, masks: Path, size: int = 64) -> None:
    """``out`` as ``crackseg annotate photos --out out`` leaves it once every photo is done: the crack patches
    clicked (the 64-px patches its mask touches; the rest of the photo counts as no crack) and the cracks traced
    (the mask), saved by the annotate page's own store: ``weak_labels.csv``, ``masks/``, ``images/``,
    ``annotations/``. A stand-in for a user's session."""
    sys.path.insert(0, str(REPO))
    import crackseg
    from crackseg.apps.annotate.photos import PhotoSet
    from crackseg.apps.annotate.store import LabelStore

    found = crackseg.images_by_stem(masks, what="mask")
    store = LabelStore(out, PhotoSet(photos), size)
    store.open()
    for stem in store.photos.stems:
        if stem not in found:
            continue
        mask = crackseg.read_mask(found[stem]).astype(bool)
        crack = [[p.x, p.y] for p in crackseg.weak_labels_from_mask(mask, size).patches if p.crack]
        state = store.state(stem)
        state = store.set_labels(stem, state.rev, "crack" if crack else "no_crack", crack)
        store.edit_mask(stem, state.rev, lambda _, traced=mask: traced)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="only say what would run or be skipped")
    ap.add_argument("--block", action="append", metavar="ID",
                    help="run only this block (README.md#2), every block of a file (docs/tutorials/photos.md), "
                         "or README block N (a bare number); repeatable")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    chosen = select(args.block, order(all_blocks()))
    if args.block and not chosen:
        ap.error(f"no block matches {args.block} (see --list)")
    first_of: dict[str, str] = {}  # block text -> id of the first chosen block with that text
    duplicate: dict[str, str] = {}
    for b in chosen:
        if b.text in first_of:
            duplicate[b.id] = first_of[b.text]
        else:
            first_of[b.text] = b.id
    if args.list:
        for b in chosen:
            why = b.skip_reason() or (f"same commands as {duplicate[b.id]}" if b.id in duplicate else "runs")
            print(f"{b.id} (line {b.line}): {why}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="doc-commands-"))
    work = scratch(root)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    rows = []
    for b in chosen:
        why = b.skip_reason() or (f"same commands as {duplicate[b.id]}, run there" if b.id in duplicate else "")
        if why:
            rows.append((b, None, f"skipped: {why}"))
            continue
        lines = [ln for ln in b.lines if not any(m in ln for m, _ in SKIP_LINES)]
        dropped = sorted({why for ln in b.lines for m, why in SKIP_LINES if m in ln})
        script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
        t = time.perf_counter()
        r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True)
        secs = time.perf_counter() - t
        tail = (r.stderr.strip().splitlines() or [""])[-1]
        status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode}): {tail[:160]}"
        if dropped and r.returncode == 0:
            status += f" (skipped {len(b.lines) - len(lines)} line(s): {'; '.join(dropped)})"
        rows.append((b, secs, status))
        print(f"{b.id} (line {b.line}): {secs:.1f} s, {status}", file=sys.stderr, flush=True)
    print(f"\nDocumentation command blocks, run as written from a copy of the checkout ({os.cpu_count()} CPU cores)\n")
    print("| block | line | seconds | status |")
    print("|---|---:|---:|---|")
    for b, secs, status in rows:
        print(f"| {b.id} | {b.line} | {'' if secs is None else f'{secs:.1f}'} | {status} |")
    if args.keep:
        print(f"\nscratch folder: {work}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(s.startswith(("ok", "skipped")) for *_, s in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
