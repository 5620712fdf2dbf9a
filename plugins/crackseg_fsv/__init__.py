"""The ``fsv`` labeler: full supervision, the ground-truth mask as pseudo-label.

It is the upper bound of the paper's Table 2 ("FSV"), and the quickest way to
train a backbone on a dataset that has pixel masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import crackseg


class FSVLabeler:
    """Returns each image's ground-truth mask (soft map = the mask as 0/1)."""

    def prepare(self, train: Sequence, context) -> None:  # noqa: D401 - nothing to prepare
        return None

    def label(self, samples: Sequence, context) -> list:
        import numpy as np

        from crackseg import PseudoLabel

        out = []
        for s in samples:
            mask = s.mask()  # DataError naming the image when it has no mask
            out.append(PseudoLabel(soft=mask.astype(np.float32), binary=mask.astype(bool)))
        return out

    def fingerprint(self) -> str:
        return "fsv-v1"


def _build() -> FSVLabeler:
    return FSVLabeler()


@crackseg.hookimpl
def register_labelers(register):
    register("fsv", _build, description="ground-truth masks as labels (full supervision, the upper bound)",
             default=True)
