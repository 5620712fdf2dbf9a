"""Contract tests for plugins: subclass these in your own test suite.

Every built-in plugin's tests subclass them, and so can a third party's::

    from crackseg.testing import BackboneContract

    class TestMyNet(BackboneContract):
        name = "my-net"              # the registered name
        params = {"width": 8}        # small, fast parameters

pytest collects the inherited ``test_*`` methods. Keep ``params`` tiny: the
contracts run forward and backward passes on CPU. Contracts: :class:`BackboneContract`,
:class:`LabelerContract`, :class:`LossContract`, :class:`PromptSetContract`,
:class:`DatasetContract`, :class:`TrainerContract`.

:func:`registered_plugin` registers a plugin module or object in this process for
the duration of a ``with`` block (no installation needed), like pytest's ``pytester``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from crackseg.base.errors import CracksegError
from crackseg.data.factory import create_dataset
from crackseg.data.samples import Sample
from crackseg.data.weak_labels import PatchLabel, WeakLabels
from crackseg.labels.contract import LabelContext, declared_artefacts
from crackseg.labels.factory import create_labeler
from crackseg.plugins import get_manager
from crackseg.plugins.factory import get_entry, list_components
from crackseg.training.factory import create_backbone, create_loss, create_prompt_set, create_trainer


@contextlib.contextmanager
def registered_plugin(plugin: Any, name: str | None = None, distribution: str = "",
                      version: str = "") -> Iterator[Any]:
    """Register ``plugin`` (a module or object with ``@crackseg.hookimpl`` functions) for a ``with`` block.

    Its components are available through ``crackseg.create_*`` and ``crackseg run`` in
    this process (``crackseg.cli.main([...])``); on exit the plugin is removed again.
    ``distribution``/``version`` play the installed package (messages and checkpoints name
    them). A plugin the manager rejects (e.g. a misspelled hook) raises ``AssertionError``
    with the manager's message. Yields the :class:`crackseg.plugins.PluginManager`.
    """
    manager = get_manager()
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    before = len(manager.problems)
    if not manager.add_plugin(plugin, name, distribution=distribution, version=version):
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


def write_tiny_dataset(folder: str | Path, n: int = 6, size: int = 32) -> Path:
    """Write :func:`tiny_crack_samples` as ``folder/images/<stem>.png`` and ``folder/masks/<stem>.png``.

    A plain image folder with masks, so ``crackseg run --data FOLDER`` reads it; returns ``folder``.
    """
    from crackseg.base.io import write_png

    root = Path(folder)
    for s in tiny_crack_samples(n, size):
        write_png(root / "images" / f"{s.stem}.png", s.load_image())
        write_png(root / "masks" / f"{s.stem}.png", s.mask())
    return root


class BackboneContract:
    """Contract of a backbone plugin (see ``crackseg.plugins.hookspecs.register_backbones``)."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    #: an awkward input size; backbones with ``fixed_input_size`` get that size instead
    input_hw: ClassVar[tuple[int, int]] = (37, 53)

    def make(self) -> Any:
        import torch

        torch.manual_seed(0)
        return create_backbone(self.name, **self.params)

    def _input(self, model: Any) -> tuple[Any, int, int]:
        import torch

        from crackseg.training.backbones import pad_to_multiple, size_multiple

        fixed = getattr(model, "fixed_input_size", None)
        h, w = (fixed, fixed) if fixed else self.input_hw
        mult = size_multiple(model)
        if not fixed and mult > 1:
            x, h, w = pad_to_multiple(torch.rand(2, 3, h, w), mult)
            return x, h, w
        return torch.rand(2, 3, h, w), h, w

    def test_registered(self) -> None:
        assert self.name in list_components("backbones"), f"backbone {self.name!r} is not registered"

    def test_forward_shapes(self) -> None:
        import torch

        from crackseg.training.backbones import as_outputs, output_problem

        model = self.make().eval()
        x, _, _ = self._input(model)
        with torch.no_grad():
            outs = as_outputs(model(x))
        problem = output_problem(outs, x.shape[0], x.shape[-2], x.shape[-1])
        assert not problem, f"{self.name}: {problem}"
        for key, t in outs.items():
            assert torch.isfinite(t).all(), f"{self.name}: output {key!r} is not finite on a random input"

    def test_backward_reaches_trainable_parameters(self) -> None:
        import torch

        from crackseg.training.backbones import as_outputs, loss_weights

        model = self.make().train()
        x, _, _ = self._input(model)
        outs = as_outputs(model(x))
        weights = loss_weights(model)
        assert set(weights) <= set(outs), f"{self.name}: loss_weights name {set(weights)}, the outputs are {set(outs)}"
        torch.stack([outs[k].float().mean() * w for k, w in weights.items()]).sum().backward()
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert trainable, f"{self.name}: no trainable parameters"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable), \
            f"{self.name}: the loss gives no gradient to any trainable parameter"

    def test_checkpoint_round_trip(self) -> None:
        """What trains (parameters, and the buffers of modules that train, e.g. BatchNorm statistics) survives."""
        import torch

        from crackseg.training.backbones import as_outputs
        from crackseg.training.checkpoints import load_model_state, model_state

        model = self.make().eval()
        persistent = set(model.state_dict())
        with torch.no_grad():
            for module_name, module in model.named_modules():
                if not any(p.requires_grad for p in module.parameters(recurse=False)):
                    continue
                for p in module.parameters(recurse=False):
                    p.add_(0.01 * torch.randn_like(p))
                for buf_name, buf in module.named_buffers(recurse=False):
                    full = f"{module_name}.{buf_name}" if module_name else buf_name
                    if full in persistent and buf.is_floating_point():
                        buf.mul_(1.5).add_(0.1)
        state = model_state(model)
        other = self.make().eval()
        load_model_state(other, state)
        x, _, _ = self._input(model)
        with torch.no_grad():
            a, b = as_outputs(model(x))["out"], as_outputs(other(x))["out"]
        assert torch.allclose(a, b, atol=1e-5), \
            f"{self.name}: a model rebuilt from its checkpoint state predicts differently (max difference " \
            f"{(a - b).abs().max().item():.3g}); does checkpoint_state_dict() drop trained parameters or buffers?"


class LossContract:
    """Contract of a loss plugin: finite scalar, gradients, a better prediction scores lower."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    #: False for auxiliary losses (e.g. ``edge``) whose optimum is not the label itself
    prefers_the_label: ClassVar[bool] = True

    def make(self) -> Any:
        return create_loss(self.name, **self.params)

    def _target(self) -> Any:
        import torch

        y = torch.zeros(2, 1, 24, 24)
        y[:, :, 10:13, :] = 1.0
        return y

    def test_scalar_and_gradient(self) -> None:
        import torch

        logits = torch.randn(2, 1, 24, 24, requires_grad=True)
        loss = self.make()(logits, self._target())
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0, f"{self.name}: returned {loss!r}, not a scalar"
        assert torch.isfinite(loss), f"{self.name}: returned {loss.item()} for random logits"
        loss.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all(), \
            f"{self.name}: no finite gradient for the logits"

    def test_better_prediction_scores_lower(self) -> None:
        if not self.prefers_the_label:
            pytest.skip(f"{self.name} is an auxiliary loss; its optimum is not the label")
        y = self._target()
        good = (y * 2 - 1) * 6.0
        bad = -good
        loss = self.make()
        assert float(loss(good, y)) < float(loss(bad, y)), \
            f"{self.name}: the label itself scores {float(loss(good, y)):.4g}, its opposite {float(loss(bad, y)):.4g}"


class PromptSetContract:
    """Contract of a prompt-set plugin."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}

    def test_sentences(self) -> None:
        ps = create_prompt_set(self.name, **self.params)
        s = ps.sentences()
        assert set(s) == {"normal", "crack"}, f"{self.name}: sentences() has keys {set(s)}, not normal and crack"
        for cls in ("normal", "crack"):
            assert s[cls], f"{self.name}: no {cls!r} sentences"
            assert all(isinstance(t, str) and t.strip() for t in s[cls]), f"{self.name}: an empty {cls!r} sentence"
            assert not any("{}" in t for t in s[cls]), f"{self.name}: an unformatted template among {cls!r}"


class DatasetContract:
    """Contract of a dataset plugin. Override ``make_params(tmp_path)`` to build data on disk."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}

    def make_params(self, tmp_path: Path) -> dict[str, Any]:
        return dict(self.params)

    def test_samples_load(self, tmp_path: Path) -> None:
        ds = create_dataset(self.name, **self.make_params(tmp_path))
        splits = ds.splits()
        assert splits, f"{self.name}: no splits"
        for split in splits:
            for s in ds.samples(split)[:3]:
                img = s.load_image()
                assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, \
                    f"{self.name}: image {s.stem!r} is {img.dtype} {img.shape}, not uint8 [H,W,3]"
                if s.has_mask:
                    m = s.mask()
                    assert m.dtype == bool and m.shape == img.shape[:2], \
                        f"{self.name}: mask {s.stem!r} is {m.dtype} {m.shape}, not bool {img.shape[:2]}"

    def test_unknown_split_is_a_clear_error(self, tmp_path: Path) -> None:
        ds = create_dataset(self.name, **self.make_params(tmp_path))
        with pytest.raises(CracksegError, match="no-such-split"):
            ds.samples("no-such-split")


class LabelerContract:
    """Contract of a labeler plugin on tiny constructed images.

    ``changed_params``: parameters that give other labels than ``params``; the fingerprint
    must change with them (it keys the label cache). Leave it empty only for a labeler
    without parameters. ``gates_by_weak_labels = True``: the labeler reads each sample's weak
    labels (``sample.weak_labels()``, :class:`crackseg.WeakLabels`) and marks no crack where
    they say there is none: checked on images labelled no-crack and on no-crack patches.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    changed_params: ClassVar[dict[str, Any]] = {}
    image_size: ClassVar[int] = 64
    gates_by_weak_labels: ClassVar[bool] = False

    def context(self, tmp_path: Path, labeler: Any = None) -> LabelContext:
        """A CPU context; every artefact the labeler declares gets a folder under ``tmp_path``."""
        work = tmp_path / "labeler"
        dirs = {name: work / name for name in declared_artefacts(labeler)} if labeler is not None else {}
        return LabelContext(device="cpu", work_dir=work, seed=0, quiet=True, artefact_dirs=dirs)

    def _prepared(self, tmp_path: Path, params: dict[str, Any]) -> Any:
        lab = create_labeler(self.name, **params)
        lab.prepare(tiny_crack_samples(3, self.image_size), self.context(tmp_path, lab))
        return lab

    def test_labels_have_image_shape(self, tmp_path: Path) -> None:
        from crackseg.labels.pseudo_labels import label_problem

        samples = tiny_crack_samples(3, self.image_size)
        lab = self._prepared(tmp_path, self.params)
        out = lab.label(samples, self.context(tmp_path, lab))
        problem = label_problem(samples, out)
        assert not problem, f"{self.name}: {problem}"

    def test_fingerprint_is_stable(self, tmp_path: Path) -> None:
        lab = self._prepared(tmp_path, self.params)
        fp = lab.fingerprint()
        assert isinstance(fp, str) and fp, f"{self.name}: fingerprint() returned {fp!r}, not a non-empty string"
        again = self._prepared(tmp_path, self.params).fingerprint()
        assert again == fp, f"{self.name}: the same parameters gave another fingerprint ({fp!r}, {again!r})"

    def test_fingerprint_changes_with_parameters(self, tmp_path: Path) -> None:
        entry = get_entry("labelers", self.name)
        if not self.changed_params:
            if entry.params is not None:
                pytest.skip(f"{self.name}: set changed_params to parameters that change the labels")
            return
        fp = self._prepared(tmp_path, self.params).fingerprint()
        other = self._prepared(tmp_path, {**self.params, **self.changed_params}).fingerprint()
        assert other != fp, f"{self.name}: changing {self.changed_params} left the fingerprint at {fp!r}"

    def test_weak_labels_say_where_there_is_no_crack(self, tmp_path: Path) -> None:
        if not self.gates_by_weak_labels:
            pytest.skip(f"{self.name}: does not declare gates_by_weak_labels")
        half = self.image_size // 2
        samples = tiny_crack_samples(2, self.image_size)  # both show a crack across the image
        none = dataclasses.replace(samples[0], load_weak_labels=lambda: WeakLabels(image=False, source="contract"))
        patches = WeakLabels(patches=(PatchLabel(0, 0, half, False), PatchLabel(0, half, half, False),
                                      PatchLabel(half, 0, half, True), PatchLabel(half, half, half, True)),
                             source="contract")
        left = dataclasses.replace(samples[1], load_weak_labels=lambda: patches)
        lab = self._prepared(tmp_path, self.params)
        empty, gated = lab.label([none, left], self.context(tmp_path, lab))
        assert not np.asarray(empty.binary).any() and not np.asarray(empty.soft).any(), (
            f"{self.name}: an image whose weak labels say no crack got crack pixels")
        region = patches.gate(self.image_size, self.image_size)
        assert region is not None
        assert not np.asarray(gated.binary)[~region].any() and not np.asarray(gated.soft)[~region].any(), (
            f"{self.name}: crack pixels in patches the weak labels call no-crack")


class TrainerContract:
    """Contract of a trainer plugin: it trains a tiny model on tiny pseudo-labels, checkpoints and resumes.

    The job: a two-layer CNN, four 32-px images with one crack each (binary labels and blurred soft
    maps), the default loss, CPU, ``epochs`` epochs of batch 2.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    epochs: ClassVar[int] = 2

    def job(self, tmp_path: Path, resume: bool = False) -> Any:
        import cv2
        import torch

        from crackseg.base.distributed import DistEnv
        from crackseg.base.io import write_png
        from crackseg.config.run_config import TrainConfig
        from crackseg.labels.contract import LabelFiles
        from crackseg.training.contract import TrainJob
        from crackseg.training.engine import Engine, EngineSettings
        from crackseg.training.losses import DeepSupervisionLoss, parse_loss

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(4, 1, 3, padding=1))
        samples = tiny_crack_samples(4, 32)
        labels = {}
        for s in samples:
            mask = s.mask().astype(np.uint8) * 255
            files = LabelFiles(tmp_path / "labels" / f"{s.stem}.png", tmp_path / "labels" / "soft" / f"{s.stem}.png")
            write_png(files.binary, mask)
            write_png(files.soft, cv2.GaussianBlur(mask, (5, 5), 1.5))
            labels[s.stem] = files
        cfg = TrainConfig(epochs=self.epochs, batch_size=2, image_size=32, lr=0.01, num_workers=0, augment=[])
        loss = DeepSupervisionLoss(parse_loss("+".join(get_manager().registries["losses"].defaults())), {"out": 1.0})
        engine = Engine(model, EngineSettings(device="cpu", env=DistEnv(), checkpoint_path=tmp_path / "checkpoint.pt",
                                              epochs=self.epochs, seed=0, resume=resume, quiet=True))
        return TrainJob(model=model, samples=samples, labels=labels, loss=loss, config=cfg, engine=engine,
                        image_size=32, work_dir=tmp_path / "trainer", seed=0)

    def test_trains_and_reports(self, tmp_path: Path) -> None:
        import math

        import torch

        from crackseg.training.result import TrainResult

        job = self.job(tmp_path)
        before = [p.detach().clone() for p in job.model.parameters()]
        result = create_trainer(self.name, **self.params).fit(job)
        assert isinstance(result, TrainResult), f"{self.name}: fit() returned {type(result).__name__}"
        assert result.epochs_done == self.epochs and len(result.history) == self.epochs, \
            f"{self.name}: {result.epochs_done} epochs done, {len(result.history)} history rows for {self.epochs}"
        assert all(math.isfinite(row.get("loss", math.nan)) for row in result.history), \
            f"{self.name}: a history row without a finite 'loss': {result.history}"
        assert any(not torch.equal(a, p.detach()) for a, p in zip(before, job.model.parameters())), \
            f"{self.name}: training changed no parameter of the model"
        ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert ckpt["done"] and ckpt["epoch"] == self.epochs, f"{self.name}: the engine's checkpoint is not finished"

    def test_a_finished_run_resumes_to_the_same_model(self, tmp_path: Path) -> None:
        import torch

        first = self.job(tmp_path)
        create_trainer(self.name, **self.params).fit(first)
        again = self.job(tmp_path, resume=True)
        result = create_trainer(self.name, **self.params).fit(again)
        assert result.stopped_early == "already finished", \
            f"{self.name}: resuming a finished run trained again ({result.stopped_early!r})"
        for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
            assert torch.equal(a, b), f"{self.name}: the resumed model differs from the trained one"
