"""The allocator settings the training engine makes (crackseg.base.allocator): fewer page faults per step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

GLIBC = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION") or "")
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc's malloc only (Linux with glibc)")

#: a fresh process: pins glibc's mmap threshold at its 128 KiB default (the history that makes every buffer a
#: fresh mapping), counts the page faults of 40 allocations of an 8 MiB buffer, tunes, counts again
PROBE = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    from crackseg.base.allocator import tune_for_training

    def faults():
        return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

    def cycle():
        before = faults()
        for _ in range(40):
            a = np.ones(8 * 1024 * 1024, np.uint8)
            del a
        return faults() - before

    libc = ctypes.CDLL(None)
    libc.mallopt(-3, 128 * 1024)
    untuned = cycle()
    tuned = tune_for_training()
    cycle()  # the heap grows once
    print(json.dumps({"untuned": untuned, "tuned": tuned, "after": cycle(), "again": tune_for_training()}))
""")


def _probe(**env: str) -> dict[str, int]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**full, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


@needs_glibc
def test_tuned_allocator_reuses_freed_buffers_instead_of_faulting_in_fresh_pages():
    r = _probe()
    assert r["tuned"] is True and r["again"] is True
    # 40 fresh 8 MiB mappings fault their pages in (fewer faults with transparent huge pages, but at least one
    # each); after tuning the heap keeps the freed buffer for the next one
    assert r["untuned"] >= 40
    assert r["after"] < r["untuned"] / 20


@needs_glibc
def test_the_users_own_malloc_settings_win():
    r = _probe(MALLOC_TRIM_THRESHOLD_="131072")
    assert r["tuned"] is False
    assert r["after"] >= r["untuned"] / 2  # nothing was changed: still a fresh mapping per buffer


def test_the_engine_tunes_the_allocator_when_training_starts(tmp_path, monkeypatch):
    import crackseg.training.engine as engine_module
    from crackseg.base.distributed import DistEnv
    from crackseg.training.engine import Engine, EngineSettings

    calls = []
    monkeypatch.setattr(engine_module, "tune_for_training", lambda: calls.append(1) or True)
    engine = Engine(torch.nn.Linear(2, 1), EngineSettings(device="cpu", env=DistEnv(),
                                                          checkpoint_path=tmp_path / "checkpoint.pt", epochs=1,
                                                          quiet=True))
    assert calls == []
    for _ in engine.epochs():
        assert calls == [1]
