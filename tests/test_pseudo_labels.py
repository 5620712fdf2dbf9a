"""The label stage: files, cache keys, recomputation, empty-label warning."""

from __future__ import annotations

import numpy as np

from crackseg.labels.contract import LabelContext, PseudoLabel
from crackseg.labels.pseudo_labels import label_paths, write_pseudo_labels
from crackseg.testing import tiny_crack_samples


class Counting:
    """A labeler that records which images it labelled."""

    def __init__(self, value: float = 1.0, fp: str = "v1") -> None:
        self.value, self.fp, self.seen = value, fp, []

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        self.seen += [s.stem for s in samples]
        out = []
        for s in samples:
            m = s.mask() if self.value else np.zeros(s.load_image().shape[:2], bool)
            out.append(PseudoLabel(soft=m.astype(np.float32) * 0.8, binary=m))
        return out

    def fingerprint(self):
        return self.fp


def test_writes_binary_and_soft_and_caches(tmp_path):
    samples = tiny_crack_samples(3, 32)
    ctx = LabelContext(quiet=True)
    lab = Counting()
    files = write_pseudo_labels(lab, samples, tmp_path, ctx)
    assert sorted(files) == ["tiny0", "tiny1", "tiny2"] and lab.seen == ["tiny0", "tiny1", "tiny2"]
    from crackseg.base.io import read_gray

    b, soft, key = label_paths(tmp_path, "tiny0")
    assert set(np.unique(read_gray(b))) <= {0, 255}
    assert read_gray(soft).max() == round(0.8 * 255)
    # overlays for the first few images (here all three: the default is 4)
    assert sorted(p.name for p in (tmp_path / "overlays").glob("*.png")) == ["tiny0.png", "tiny1.png", "tiny2.png"]
    # a rerun computes nothing
    again = Counting()
    write_pseudo_labels(again, samples, tmp_path, ctx)
    assert again.seen == []
    # a changed fingerprint recomputes everything; a deleted label only itself
    changed = Counting(fp="v2")
    write_pseudo_labels(changed, samples, tmp_path, ctx)
    assert changed.seen == ["tiny0", "tiny1", "tiny2"]
    b.unlink()
    one = Counting(fp="v2")
    write_pseudo_labels(one, samples, tmp_path, ctx)
    assert one.seen == ["tiny0"]


def test_all_empty_labels_warn(tmp_path, capsys):
    write_pseudo_labels(Counting(value=0.0), tiny_crack_samples(2, 32), tmp_path, LabelContext(quiet=True))
    err = capsys.readouterr().err
    assert "all 2 pseudo-labels" in err and "empty" in err
