"""Contract tests for plugins: subclass these in your own test suite.

Every built-in plugin's tests subclass them, and so can a third party's::

    from crackseg.testing import BackboneContract

    class TestMyNet(BackboneContract):
        name = "my-net"              # the registered name
        params = {"width": 8}        # small, fast parameters

pytest collects the inherited ``test_*`` methods. Keep ``params`` tiny: the
contracts run forward and backward passes on CPU.

:func:`registered_plugin` registers a plugin module or object in this process for
the duration of a ``with`` block (no installation needed), like pytest's ``pytester``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import crackseg
from crackseg.data import Sample
from crackseg.errors import CracksegError
from crackseg.labeler import LabelContext, declared_artefacts
from crackseg.plugins import get_manager


@contextlib.contextmanager
def registered_plugin(plugin: Any, name: str | None = None) -> Iterator[Any]:
    """Register ``plugin`` (a module or object with ``@crackseg.hookimpl`` functions) for a ``with`` block.

    Its components are available through ``crackseg.create_*``, ``crackseg run`` in this
    process and the CLI group ``crackseg.cli.cli``; on exit the plugin is removed again.
    A plugin the manager rejects (e.g. a misspelled hook) raises ``AssertionError`` with
    the manager's message. Yields the :class:`crackseg.plugins.PluginManager`.
    """
    manager = get_manager()
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    before = len(manager.problems)
    if not manager.add_plugin(plugin, name):
        raise AssertionError(manager.problems[-1] if len(manager.problems) > before else f"plugin {name!r} rejected")
    manager.fill_registries()
    try:
        yield manager
    finally:
        manager.remove_plugin(name)
        manager.fill_registries()


def tiny_crack_samples(n: int = 3, size: int = 64, seed: int = 0) -> list[Sample]:
    """``n`` small images with one dark diagonal-ish crack each (and exact masks)."""
    import cv2

    out = []
    for i in range(n):
        rng = np.random.default_rng((seed, i))
        img = rng.normal(150, 12, (size, size, 3)).clip(0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        if i % 3 != 2:  # every third image is crack-free
            pts = np.cumsum(rng.integers(-3, 4, (8, 2)), axis=0) + [size // 4, 0]
            pts[:, 1] = np.linspace(0, size - 1, len(pts))
            cv2.polylines(mask, [pts[:, ::-1].astype(np.int32)], False, 1, thickness=2)
        img[mask > 0] = (img[mask > 0] * 0.35).astype(np.uint8)
        m = mask > 0
        out.append(Sample(stem=f"tiny{i}", load_image=functools.partial(np.copy, img),
                          load_mask=functools.partial(np.copy, m), source=f"tiny:{seed}:{i}"))
    return out


class BackboneContract:
    """Contract of a backbone plugin (see ``crackseg.plugins.hookspecs.register_backbones``)."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    #: an awkward input size; backbones with ``fixed_input_size`` get that size instead
    input_hw: ClassVar[tuple[int, int]] = (37, 53)

    def make(self):
        import torch

        torch.manual_seed(0)
        return crackseg.create_backbone(self.name, **self.params)

    def _input(self, model):
        import torch

        fixed = getattr(model, "fixed_input_size", None)
        h, w = (fixed, fixed) if fixed else self.input_hw
        mult = int(getattr(model, "size_multiple", 1) or 1)
        if not fixed and mult > 1:
            from crackseg.backbone import pad_to_multiple

            x, h, w = pad_to_multiple(torch.rand(2, 3, h, w), mult)
            return x, h, w
        return torch.rand(2, 3, h, w), h, w

    def test_registered(self):
        assert self.name in crackseg.list_plugins("backbones")

    def test_forward_shapes(self):
        import torch

        from crackseg.backbone import as_outputs

        model = self.make().eval()
        x, h, w = self._input(model)
        with torch.no_grad():
            outs = as_outputs(model(x))
        assert "out" in outs
        for key, t in outs.items():
            assert t.shape[0] == 2 and t.shape[1] == 1, f"{key}: {tuple(t.shape)}"
            assert t.shape[-2:] == x.shape[-2:], f"{key}: {tuple(t.shape)} vs input {tuple(x.shape)}"
            assert torch.isfinite(t).all(), key

    def test_backward_reaches_trainable_parameters(self):
        import torch

        from crackseg.backbone import as_outputs, loss_weights

        model = self.make().train()
        x, _, _ = self._input(model)
        outs = as_outputs(model(x))
        weights = loss_weights(model)
        assert set(weights) <= set(outs), f"loss_weights {set(weights)} vs outputs {set(outs)}"
        torch.stack([outs[k].float().mean() * w for k, w in weights.items()]).sum().backward()
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert trainable, "no trainable parameters"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)

    def test_checkpoint_round_trip(self):
        import torch

        from crackseg.backbone import as_outputs
        from crackseg.checkpoints import load_model_state, model_state

        model = self.make().eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.01 * torch.randn_like(p))
        state = model_state(model)
        other = self.make().eval()
        load_model_state(other, state)
        x, _, _ = self._input(model)
        with torch.no_grad():
            a, b = as_outputs(model(x))["out"], as_outputs(other(x))["out"]
        assert torch.allclose(a, b, atol=1e-5)


class LossContract:
    """Contract of a loss plugin: finite scalar, gradients, a better prediction scores lower."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    #: False for auxiliary losses (e.g. ``edge``) whose optimum is not the label itself
    prefers_the_label: ClassVar[bool] = True

    def make(self):
        return crackseg.create_loss(self.name, **self.params)

    def _target(self):
        import torch

        y = torch.zeros(2, 1, 24, 24)
        y[:, :, 10:13, :] = 1.0
        return y

    def test_scalar_and_gradient(self):
        import torch

        logits = torch.randn(2, 1, 24, 24, requires_grad=True)
        loss = self.make()(logits, self._target())
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()

    def test_better_prediction_scores_lower(self):
        if not self.prefers_the_label:
            pytest.skip(f"{self.name} is an auxiliary loss; its optimum is not the label")
        y = self._target()
        good = (y * 2 - 1) * 6.0
        bad = -good
        loss = self.make()
        assert float(loss(good, y)) < float(loss(bad, y))


class PromptSetContract:
    """Contract of a prompt-set plugin."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}

    def test_sentences(self):
        ps = crackseg.create_prompt_set(self.name, **self.params)
        s = ps.sentences()
        assert set(s) == {"normal", "crack"}
        for cls in ("normal", "crack"):
            assert s[cls] and all(isinstance(t, str) and t.strip() for t in s[cls])
            assert not any("{}" in t for t in s[cls]), "unformatted template"


class DatasetContract:
    """Contract of a dataset plugin. Override ``make_params(tmp_path)`` to build data on disk."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}

    def make_params(self, tmp_path: Path) -> dict[str, Any]:
        return dict(self.params)

    def test_samples_load(self, tmp_path):
        ds = crackseg.create_dataset(self.name, **self.make_params(tmp_path))
        splits = ds.splits()
        assert splits
        for split in splits:
            for s in ds.samples(split)[:3]:
                img = s.load_image()
                assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
                if s.has_mask:
                    m = s.mask()
                    assert m.dtype == bool and m.shape == img.shape[:2]

    def test_unknown_split_is_a_clear_error(self, tmp_path):
        ds = crackseg.create_dataset(self.name, **self.make_params(tmp_path))
        try:
            ds.samples("no-such-split")
        except CracksegError as exc:
            assert "no-such-split" in str(exc)
        else:
            raise AssertionError("unknown split accepted")


class LabelerContract:
    """Contract of a labeler plugin on tiny constructed images."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    image_size: ClassVar[int] = 64

    def context(self, tmp_path: Path, labeler: Any = None):
        """A CPU context; every artefact the labeler declares gets a folder under ``tmp_path``."""
        work = tmp_path / "labeler"
        dirs = {name: work / name for name in declared_artefacts(labeler)} if labeler is not None else {}
        return LabelContext(device="cpu", work_dir=work, seed=0, quiet=True, batch_size=4, artefact_dirs=dirs)

    def test_labels_have_image_shape(self, tmp_path):
        samples = tiny_crack_samples(3, self.image_size)
        lab = crackseg.create_labeler(self.name, **self.params)
        ctx = self.context(tmp_path, lab)
        lab.prepare(samples, ctx)
        out = lab.label(samples, ctx)
        assert len(out) == len(samples)
        for s, pl in zip(samples, out):
            h, w = s.load_image().shape[:2]
            assert pl.soft.shape == (h, w) and pl.binary.shape == (h, w)
            assert pl.soft.dtype == np.float32 and pl.binary.dtype == bool
            assert float(pl.soft.min()) >= 0.0 and float(pl.soft.max()) <= 1.0

    def test_fingerprint_is_stable(self, tmp_path):
        samples = tiny_crack_samples(3, self.image_size)
        lab = crackseg.create_labeler(self.name, **self.params)
        lab.prepare(samples, self.context(tmp_path, lab))
        fp = lab.fingerprint()
        assert isinstance(fp, str) and fp
        assert fp == lab.fingerprint()
