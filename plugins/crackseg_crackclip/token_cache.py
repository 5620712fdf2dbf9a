"""A bounded cache of frozen-encoder stage tokens, keyed by training image.

The CLIP towers are frozen, so an un-augmented training image always yields
the same stage tokens; caching them turns every epoch after the first into
"adapters only". Entries are ``[n_stages, n_tokens, width]`` tensors stored in
half precision on the CPU (``memory``) or as files (``disk``), until
``max_bytes`` is reached; later entries are simply not stored (for epoch-wise
training that keeps a fixed subset hot, whereas LRU eviction would miss every
time). Disk entries live under a folder named by the model fingerprint, so
they are reused across runs of the same model and never mixed between models.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch

from crackseg import atomic_write


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/crackseg/tokens`` (``~/.cache/crackseg/tokens``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crackseg" / "tokens"


class TokenCache:
    """Key → stage tokens, in memory or on disk, bounded by ``max_bytes``."""

    def __init__(
        self,
        mode: str,
        max_bytes: int,
        fingerprint: str,
        directory: str | None = None,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        if mode not in ("memory", "disk"):
            raise ValueError(f"token cache mode must be 'memory' or 'disk', got {mode!r}")
        self.mode = mode
        self.max_bytes = int(max_bytes)
        self.dtype = dtype
        self.hits = 0
        self.misses = 0
        self.nbytes = 0
        self.full = False
        self._mem: dict[str, torch.Tensor] = {}
        self._files: dict[str, int] = {}
        self.root: Path | None = None
        if mode == "disk":
            self.root = Path(directory).expanduser() if directory else default_cache_dir()
            self.root = self.root / fingerprint
            self.root.mkdir(parents=True, exist_ok=True)
            for f in self.root.glob("*.pt"):
                size = f.stat().st_size
                self._files[f.stem] = size
                self.nbytes += size

    def __len__(self) -> int:
        return len(self._mem) if self.mode == "memory" else len(self._files)

    def __contains__(self, key: str) -> bool:
        return key in self._mem if self.mode == "memory" else _name(key) in self._files

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tokens of ``key`` (CPU, cache dtype) or ``None``."""
        if self.mode == "memory":
            out = self._mem.get(key)
        else:
            out = self._read(key)
        if out is None:
            self.misses += 1
        else:
            self.hits += 1
        return out

    def put(self, key: str, tokens: torch.Tensor) -> bool:
        """Store ``tokens`` (converted to the cache dtype, on the CPU); False when the cache is full."""
        if key in self:
            return True
        t = tokens.detach().to(device="cpu", dtype=self.dtype).contiguous()
        size = t.numel() * t.element_size()
        if self.nbytes + size > self.max_bytes:
            if not self.full:
                self.full = True
                print(
                    f"crackseg: token cache full ({self.nbytes / 2**30:.2f} GiB, {len(self)} images); "
                    "further images are recomputed each epoch (raise token_cache_max_gb to cache all)",
                    file=sys.stderr,
                )
            return False
        if self.mode == "memory":
            self._mem[key] = t
            self.nbytes += size
        else:
            name = _name(key)
            path = atomic_write(self._path(name), lambda tmp: torch.save(t, tmp))
            disk = path.stat().st_size
            self._files[name] = disk
            self.nbytes += disk
        return True

    def _path(self, name: str) -> Path:
        assert self.root is not None
        return self.root / f"{name}.pt"

    def _read(self, key: str) -> torch.Tensor | None:
        name = _name(key)
        if name not in self._files:
            return None
        path = self._path(name)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged/removed entry is a miss, rebuilt later
            self.nbytes -= self._files.pop(name, 0)
            try:
                path.unlink()
            except OSError:
                pass
            return None


def _name(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()
