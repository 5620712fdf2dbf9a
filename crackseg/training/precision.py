"""Mixed precision: the autocast dtype of a ``train.precision`` setting on a device (torch)."""

from __future__ import annotations

import torch


def amp_dtype(precision: str, device: str) -> torch.dtype | None:
    """``float16`` for ``16-mixed``, ``bfloat16`` for ``bf16-mixed`` on a CUDA device; None otherwise (full float32)."""
    if not device.startswith("cuda"):
        return None
    return {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
