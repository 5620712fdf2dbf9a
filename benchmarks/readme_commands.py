"""Run the README's command blocks as written, in a scratch copy of the checkout, and time each one.

Every fenced ``bash`` block of README.md is either run (its lines in order, in one shell, from
the scratch folder: a copy of the checkout's files with ``.venv`` linked and ``../shared``
beside it, as in a fresh clone) or skipped for a stated reason (it needs a GPU, weights or
data that are not shipped, or it is a benchmark of its own). ``photos/`` is made from three
shipped CFD photos first: the README's stand-in for "your photos". Blocks that read a compare
grid's run folder run after the block that makes it.

    .venv/bin/python benchmarks/readme_commands.py            # every runnable block (about 15 min on 2 cores)
    .venv/bin/python benchmarks/readme_commands.py --list     # what would run or be skipped, and why
    .venv/bin/python benchmarks/readme_commands.py --block 2  # one block (and nothing it depends on)

Prints one table row per block (README line, seconds, status) and exits 1 if a block failed.
:func:`blocks` and :func:`commands` are also used by ``tests/test_readme.py``, which checks
every ``crackseg`` command of the README against the CLI without running it.
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
#: a block holding one of these is not run: (marker, why)
SKIP = [
    ("path/to/crack500", "needs the full Crack500 and CLIP ViT-L/14 weights (not shipped)"),
    ("torchrun", "needs several GPUs or nodes"),
    ("python benchmarks/", "a benchmark of its own (minutes to an hour; its table is in the README)"),
]
#: lines (substring) skipped inside a block that otherwise runs: (marker, why)
SKIP_LINES = [("--preset paper", "the paper's setting needs a GPU, Crack500 and CLIP weights"),
              ("./dev test", "the test suite (CI runs it)")]
#: blocks that read what a later block writes run after it: (marker of the reader, marker of the writer)
AFTER = [("runs/paper-cpu-small/cells", "crackseg compare configs/paper/all.yaml --preset cpu-small"),
         ("crackseg report runs/paper-cpu-small", "crackseg compare configs/paper/all.yaml --preset cpu-small")]


@dataclass
class Block:
    """A fenced bash block of the README: its first line number and its logical lines."""

    line: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def skip_reason(self) -> str:
        return next((why for marker, why in SKIP if marker in self.text), "")


def blocks(readme: Path = REPO / "README.md") -> list[Block]:
    """Every ```bash block, its continuation lines (``\\``) joined."""
    out: list[Block] = []
    current: list[str] | None = None
    start = 0
    for i, raw in enumerate(readme.read_text().splitlines(), 1):
        if current is None:
            if raw.strip() == "```bash":
                current, start = [], i + 1
            continue
        if raw.strip() == "```":
            out.append(Block(start, _join(current)))
            current = None
            continue
        current.append(raw)
    return out


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
    """README order, except that a block reading a compare folder follows the block writing it."""
    result = list(all_blocks)
    for reader, writer in AFTER:
        w = next((b for b in result if writer in b.text), None)
        readers = [b for b in result if reader in b.text and b is not w]
        for r in readers:
            if w is not None and result.index(r) < result.index(w):
                result.remove(r)
                result.insert(result.index(w) + 1, r)
    return result


def scratch(root: Path) -> Path:
    """A fresh-clone-like folder: the checkout's tracked files, ``.venv`` linked, ``../shared`` beside it."""
    work = root / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        dst = work / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst)
    (work / ".venv").symlink_to(REPO / ".venv")
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (root / "shared").symlink_to(shared)
    photos = work / "photos"
    photos.mkdir()
    cfd = shared / "datasets" / "cfd" / "images"
    for p in sorted(cfd.glob("*.jpg"))[:3] if cfd.is_dir() else []:
        shutil.copy2(p, photos / p.name)
    return work


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="only say what would run or be skipped")
    ap.add_argument("--block", type=int, action="append", help="run only block N (1-based, README order)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    all_blocks = blocks()
    numbered = {id(b): i for i, b in enumerate(all_blocks, 1)}
    chosen = [b for b in order(all_blocks) if not args.block or numbered[id(b)] in args.block]
    if args.list:
        for b in chosen:
            print(f"block {numbered[id(b)]} (README line {b.line}): {b.skip_reason() or 'runs'}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="readme-commands-"))
    work = scratch(root)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    rows = []
    for b in chosen:
        n = numbered[id(b)]
        why = b.skip_reason()
        if why:
            rows.append((n, b.line, None, f"skipped: {why}"))
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
        rows.append((n, b.line, secs, status))
        print(f"block {n} (line {b.line}): {secs:.1f} s, {status}", file=sys.stderr, flush=True)
    print(f"\nREADME command blocks, run as written from a copy of the checkout ({os.cpu_count()} CPU cores)\n")
    print("| block | README line | seconds | status |")
    print("|---:|---:|---:|---|")
    for n, line, secs, status in rows:
        print(f"| {n} | {line} | {'' if secs is None else f'{secs:.1f}'} | {status} |")
    if args.keep:
        print(f"\nscratch folder: {work}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(s.startswith(("ok", "skipped")) for *_, s in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

