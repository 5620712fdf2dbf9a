"""How long training the patch classifier will take on a CPU, said before it starts.

The costs are training milliseconds per 128-px patch (forward, backward and SGD step, batch
16) measured on this project's 2-core CPU machine (torch 2.x, 2 threads); other sizes scale
with the pixel count. It is an order of magnitude, not a promise: a busy or faster machine
differs, and CUDA is not estimated.
"""

from __future__ import annotations

#: training ms per 128x128 patch on 2 CPU cores (measured 2026-11-29, batch 16)
MS_PER_PATCH_128: dict[str, float] = {"resnet18": 22.0, "resnet34": 40.0, "resnet50": 61.0}
#: estimates above this many seconds are printed
SAY_ABOVE_S = 180.0


def training_seconds(arch: str, patch_size: int, patches_per_epoch: int, epochs: int) -> float | None:
    """Estimated CPU seconds to train ``arch`` (None for an architecture without a measured cost)."""
    ms = MS_PER_PATCH_128.get(arch)
    if ms is None:
        return None
    return ms / 1000.0 * (patch_size / 128.0) ** 2 * patches_per_epoch * epochs


def duration(seconds: float) -> str:
    """``"about 40 min"``, ``"about 2 h 10 min"``, ``"about 50 s"``."""
    if seconds < 90:
        return f"about {max(10, round(seconds, -1)):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def cpu_estimate(arch: str, patch_size: int, patches_per_epoch: int, epochs: int,
                 section: str = "labeler.classifier") -> str | None:
    """The line to print before a long CPU training (None when it is short or not estimable).

    ``section`` is where the settings live in the user's config (for the suggested ``--set``).
    """
    secs = training_seconds(arch, patch_size, patches_per_epoch, epochs)
    if secs is None or secs < SAY_ABOVE_S:
        return None
    line = (f"patch classifier: {arch} x {epochs} epochs x {patches_per_epoch:,} patches of {patch_size} px on "
            f"the CPU: {duration(secs)}")
    faster = [f"--set {section}.max_patches_per_epoch=N caps each epoch"]
    if arch != "resnet18":
        ratio = MS_PER_PATCH_128[arch] / MS_PER_PATCH_128["resnet18"]
        faster.insert(0, f"--set {section}.arch=resnet18 is about {ratio:.1f}x faster")
    return line + "; " + ", ".join(faster)
