"""``crackseg export``: a finished run's backbone as one self-describing ONNX file.

The graph takes ``float32 [N, 3, S, S]`` RGB in [0, 1] (``image / 255``) and returns the crack
probability ``float32 [N, 1, S, S]``: the backbone's input normalisation, its padding to a size
multiple and the sigmoid are inside the graph. ``S`` is the run's window size (any height and
width with ``dynamic``). The run's prediction settings (threshold, resize or tile, erosion, …),
the backbone's name, parameters and plugin go into the model's metadata (``crackseg`` key), so
the file alone is enough for ``crackseg predict model.onnx photos/``. The metadata also records the
threshold ``crackseg predict SOURCE`` would cut at (a run folder's ODS threshold, a checkpoint's
``predict.threshold``; its ``threshold`` entry, also written as ``predict.threshold``), so that
``crackseg predict model.onnx`` writes the same masks as ``crackseg predict RUN_DIR``.

Export tries ``torch.export`` (the dynamo exporter) first and falls back to the TorchScript
exporter (with PyTorch's fused-attention fast path off, which it cannot export); the exported
file is then checked against the torch model with onnxruntime on random inputs (at a second window
size with ``dynamic``) before it is moved into place (:class:`Parity`). The check is judged against
torch's own float32 error: the reference is the torch model in float64 on the same inputs; the ONNX
graph's max |Δp| from it may be :data:`PARITY_FACTOR` times torch fp32's own (at least
:data:`PARITY_TOLERANCE`), and at the recorded threshold its masks may differ from torch fp32's on at
most :data:`MASK_FLIP_BOUND` of the pixels (or :data:`PARITY_FACTOR` times the share where torch fp32's
masks differ from float64's, when that is more).

With ``fp16`` the checked fp32 graph is converted to half-precision weights and arithmetic
(onnxconverter-common; inputs and outputs stay float32, numerically fragile ops stay fp32) and
checked again, against the same float64 reference, with a tolerance for half precision (5e-2), on images
like those it will see: a run folder's first training images (never one of its test split), resized to the
window; random images for a bare checkpoint, or where the run's images cannot be read. Its mask changes are
reported, not judged.

With ``int8`` (a run folder only) the checked fp32 graph is quantised statically (onnxruntime's QDQ
format: per-channel int8 convolution weights, uint8 activations whose ranges are calibrated on windows
of the run's own training images; the last convolution and the sigmoid stay float, so probabilities
stay smooth near the threshold). No tolerance can hold an 8-bit model to the fp32 one on random inputs;
instead the export measures what changes where it matters and prints it (:class:`Int8Check`): the ODS
of both models on the first test images of the run's test split, the share of mask pixels that flip at
the run's threshold, and the speed of int8 vs fp32 vs torch on this CPU. The metadata records it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crackseg.base.console import first_line
from crackseg.base.errors import CracksegError, DataError
from crackseg.base.storage import storage_error
from crackseg.base.version import __version__
from crackseg.prediction.onnx_predictor import META_KEY, OnnxPredictor, open_session
from crackseg.prediction.thresholds import threshold_record
from crackseg.prediction.windows import WindowPredictor
from crackseg.training.backbones import as_outputs, input_stats, pad_to_multiple, size_multiple
from crackseg.training.factory import load_model

#: the version of what the metadata (key ``onnx_predictor.META_KEY``) holds; 2 added the ``threshold`` entry
#: (format 1 files are read as before: cut at their ``predict.threshold``)
META_FORMAT = 2
#: fp32 ONNX vs torch in float64: the ONNX graph's largest |Δp| may be PARITY_FACTOR times torch fp32's own
#: largest |Δp| on the same random inputs, and at least PARITY_TOLERANCE (an absolute floor, for models
#: whose float32 error is tiny, or that have no float64 copy)
PARITY_FACTOR = 4.0
PARITY_TOLERANCE = 1e-4
#: the share of mask pixels (probability > the recorded threshold) on the parity inputs where the ONNX graph
#: and torch fp32 disagree may be at most this, or PARITY_FACTOR times the share where torch fp32 and float64
#: disagree (a model whose probabilities crowd the threshold), when that is more
MASK_FLIP_BOUND = 1e-3
#: the same for an fp16 export: half precision carries about three decimal digits, and random inputs
#: drive activations far harder than photos (unet: 0.019 on random inputs, 0.007 on photos)
FP16_TOLERANCE = 5e-2
#: --int8: training windows its activation ranges are calibrated on; test images its masks are checked on
CALIBRATION_WINDOWS = 32
CHECK_IMAGES = 8


class _Exported(torch.nn.Module):
    """RGB in [0, 1] → crack probability, with the backbone's normalisation and padding inside."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        mean, std = input_stats(model)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.multiple = size_multiple(model)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / self.std
        x, h, w = pad_to_multiple(x, self.multiple)
        return torch.sigmoid(as_outputs(self.model(x))["out"][:, :1, :h, :w])


@dataclass
class Int8Check:
    """What ``--int8`` changes, measured at export time (printed, and kept in the metadata)."""

    #: what the activation ranges were calibrated on, e.g. "32 windows of 32 train images of cfd"
    calibration: str
    #: test images of the run's test split predicted with both models (those with masks are scored)
    images: int
    ods_fp32: float | None
    ods_int8: float | None
    #: the threshold recorded in the export (a run folder's ODS threshold when evaluated) and the share of mask
    #: pixels that flip at it: of all pixels, and of the pixels the fp32 model calls crack
    threshold: float
    flipped: float
    flipped_of_crack: float | None
    #: images/s on this CPU, same windows, batch and threads: ``torch``, ``fp32`` (ONNX), ``int8``
    speed: dict[str, float] = field(default_factory=dict)
    tiles: int = 0
    batch_size: int = 0
    threads: int = 0

    def lines(self) -> list[str]:
        """The lines ``crackseg export --int8`` prints."""
        t, f, q = (self.speed.get(k, float("nan")) for k in ("torch", "fp32", "int8"))
        out = [f"int8 speed on this CPU ({self.tiles} windows, batch {self.batch_size}, {self.threads} threads): "
               f"{q:.2f} img/s = {q / f:.2f}x the fp32 ONNX model ({f:.2f}), {q / t:.2f}x torch ({t:.2f})"]
        if not self.images:
            return [*out, f"int8 ODS and masks: not checked (--check-images 0; calibrated on {self.calibration})"]
        if self.ods_fp32 is not None and self.ods_int8 is not None:
            out.append(f"int8 ODS on {self.images} test images: {100 * self.ods_int8:.2f} vs fp32 "
                       f"{100 * self.ods_fp32:.2f} ({100 * (self.ods_int8 - self.ods_fp32):+.2f})")
        else:
            out.append(f"int8 ODS: not measured (the {self.images} test images checked have no cracks in masks)")
        crack = "" if self.flipped_of_crack is None else f", {100 * self.flipped_of_crack:.2f}% of fp32's crack pixels"
        out.append(f"int8 masks at threshold {self.threshold:g}: {100 * self.flipped:.3f}% of pixels flip{crack} "
                   f"(calibrated on {self.calibration})")
        return out


@dataclass
class Parity:
    """An exported graph checked against the torch model on the same inputs (:func:`parity`): random images, or
    (``--fp16`` of a run folder) windows of the run's training images."""

    #: ``fp32`` (judged by :data:`PARITY_FACTOR`, :data:`PARITY_TOLERANCE`, :data:`MASK_FLIP_BOUND`) or ``fp16``
    #: (judged by :data:`FP16_TOLERANCE` only; its mask changes are reported)
    precision: str
    sizes: tuple[int, ...]
    #: random images per size
    images: int
    #: max |Δp| vs the reference (torch in float64): of the ONNX graph, of torch in float32
    onnx_error: float
    torch_error: float
    #: max |Δp| between the ONNX graph and torch fp32
    onnx_vs_torch: float
    #: "float64", or "float32" when the backbone has no float64 copy (torch_error is then 0)
    reference: str
    #: probability > threshold: pixels whose mask differs between ONNX and torch fp32, torch fp32 and float64
    threshold: float
    flipped: int
    torch_flipped: int
    pixels: int
    #: what the inputs were: ``random``, or e.g. ``train images of cfd`` (resized to the sizes)
    inputs: str = "random"

    @property
    def allowed(self) -> float:
        """The largest ``onnx_error`` accepted."""
        if self.precision == "fp16":
            return FP16_TOLERANCE
        return max(PARITY_FACTOR * self.torch_error, PARITY_TOLERANCE)

    @property
    def flip_bound(self) -> float | None:
        """The largest share of flipped mask pixels accepted (None: reported only)."""
        if self.precision == "fp16":
            return None
        return max(MASK_FLIP_BOUND, PARITY_FACTOR * self.torch_flipped / max(self.pixels, 1))

    @property
    def flipped_share(self) -> float:
        return self.flipped / max(self.pixels, 1)

    def failure(self) -> str:
        """Why the graph is not faithful (the end of a one-line error), or ""."""
        if not self.onnx_error <= self.allowed:  # NaN fails too
            if self.precision == "fp16":
                hint = ("; export it without --fp16, or export its run folder: --fp16 is then judged on the run's "
                        "training images" if self.inputs == "random" else "; export it without --fp16")
                return (f"in half precision the ONNX graph differs from the torch model by {self.onnx_error:.2g} "
                        f"(> {FP16_TOLERANCE:g}, max |Δp| vs torch in {self.reference} on {self._inputs()}){hint}")
            own = (f"{PARITY_FACTOR:g}x torch fp32's own {self.torch_error:.2g} and {PARITY_TOLERANCE:g}"
                   if self.reference == "float64" else f"{PARITY_TOLERANCE:g}")
            return (f"the ONNX graph differs from the torch model in {self.reference} by {self.onnx_error:.2g} "
                    f"(max |Δp| on {self._inputs()}; more than {own}); it cannot be exported faithfully")
        bound = self.flip_bound
        if bound is not None and self.flipped_share > bound:
            return (f"at threshold {_shown(self.threshold)} the ONNX graph's masks differ from the torch model's "
                    f"on {100 * self.flipped_share:.3f}% of the pixels of {self._inputs()} (> {100 * bound:.3g}%; "
                    f"max |Δp| {self.onnx_vs_torch:.2g}); it cannot be exported faithfully")
        return ""

    def line(self) -> str:
        """What ``crackseg export`` prints about this check."""
        accepted = f"accepted up to {self.allowed:.1e}" + (" in half precision" if self.precision == "fp16" else "")
        ref = "" if self.reference == "float64" else " (no float64 copy of this backbone: torch fp32 is the reference)"
        bound = self.flip_bound
        judged = "reported, not judged, in half precision" if bound is None else f"accepted up to {100 * bound:.3g}%"
        return (f"{self.precision} parity on {self._inputs()}: max |Δp| vs torch in {self.reference}: ONNX "
                f"{self.onnx_error:.1e}, torch fp32 {self.torch_error:.1e} ({accepted}){ref}; masks at threshold "
                f"{_shown(self.threshold)}: {self.flipped} of {self.pixels} pixels ({100 * self.flipped_share:.3f}%) "
                f"differ between ONNX and torch fp32 ({judged})")

    def _inputs(self) -> str:
        sizes = " and ".join(f"{s}x{s}" for s in self.sizes)
        if self.inputs == "random":
            return f"{self.images} random {sizes} images"
        return f"{self.images} {self.inputs} resized to {sizes}"


def _shown(t: float) -> str:
    """A threshold as ``crackseg predict`` prints it (0.60, 0.437)."""
    return f"{t:.2f}" if round(t, 2) == t else f"{t:g}"


def parity(ref64: list[np.ndarray], ref32: list[np.ndarray], got: list[np.ndarray], threshold: float, *,
           precision: str = "fp32", sizes: tuple[int, ...] = (), reference: str = "float64",
           inputs: str = "random") -> Parity:
    """The figures of an exported graph's check: ``got`` (its probabilities), ``ref32`` (torch's) and ``ref64``
    (torch's in float64, or ``ref32`` again when there is none: ``reference="float32"``), one array per size."""
    def worst(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return max(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) for x, y in zip(a, b, strict=True))

    def flips(a: list[np.ndarray], b: list[np.ndarray]) -> int:
        return sum(int(np.count_nonzero((x > threshold) != (y > threshold))) for x, y in zip(a, b, strict=True))

    return Parity(precision=precision, sizes=sizes, images=int(ref32[0].shape[0]) if ref32 else 0,
                  onnx_error=worst(got, ref64), torch_error=worst(ref32, ref64), onnx_vs_torch=worst(got, ref32),
                  reference=reference, threshold=float(threshold), flipped=flips(got, ref32),
                  torch_flipped=flips(ref32, ref64), pixels=sum(int(x.size) for x in ref32), inputs=inputs)


@dataclass
class ExportResult:
    path: Path
    exporter: str
    #: max |Δp| between the written graph and torch fp32 on the parity inputs
    max_diff: float
    sizes: tuple[int, ...]
    metadata: dict[str, Any]
    int8: Int8Check | None = None
    #: the checks against torch: the fp32 graph's, then (``fp16``) the half-precision graph's
    parity: tuple[Parity, ...] = ()

    def lines(self) -> list[str]:
        """What ``crackseg export`` prints after its first line: the parity figures, the recorded threshold and
        (``int8``) what quantisation changed."""
        out = [p.line() for p in self.parity]
        rec = self.metadata.get("threshold") or {}
        if "value" in rec:
            out.append(f"masks are cut at threshold {_shown(float(rec['value']))} ({rec.get('why', '')}), "
                       f"recorded in {self.path.name}; crackseg predict --threshold T overrides it")
        return [*out, *(self.int8.lines() if self.int8 else [])]


def export_onnx(source: str | Path, out: str | Path, *, opset: int = 18, dynamic: bool = False,
                fp16: bool = False, int8: bool = False, calibration: int | None = None,
                check_images: int | None = None) -> ExportResult:
    """Export the backbone of a run folder or checkpoint to ``out`` (checked, then written atomically).

    ``int8``: quantise it (a run folder: ``calibration`` windows of its training images, default
    :data:`CALIBRATION_WINDOWS`) and measure the change on the first ``check_images`` images of its test
    split (default :data:`CHECK_IMAGES`; 0: speed only); :attr:`ExportResult.int8` says what was found.
    """
    if int8 and fp16:
        raise CracksegError("--int8 and --fp16 do not combine (one precision per model); choose one")
    for flag, value, least in (("--calibration", calibration, 1), ("--check-images", check_images, 0)):
        if value is not None and not int8:
            raise CracksegError(f"{flag} applies to --int8 only")
        if value is not None and value < least:
            raise CracksegError(f"{flag} {value}: must be at least {least}")
    flag = " --fp16" if fp16 else " --int8" if int8 else ""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        if fp16:
            import onnxconverter_common  # noqa: F401
    except ModuleNotFoundError as exc:
        raise CracksegError(f"crackseg export{flag} needs the {exc.name!r} package; "
                            f"pip install 'crackseg[onnx]'") from None
    out = Path(out)
    if out.suffix != ".onnx":
        raise CracksegError(f"--out {out}: the file name must end in .onnx")
    if not 14 <= opset <= 23:
        raise CracksegError(f"--opset {opset}: must be between 14 and 23")
    run_dir = _run_folder(source) if int8 else None
    if int8 and run_dir is None:
        raise CracksegError(f"{source}: --int8 needs a run folder (its config.yaml names the training images "
                            f"to calibrate on and the test split to check the int8 model on)")
    model, ckpt = load_model(source)
    model.eval()
    name = str(ckpt["backbone"]["name"])
    pc = dict(ckpt.get("predict") or {})
    # what `crackseg predict SOURCE` cuts at (a run folder: its ODS threshold), recorded for `predict MODEL.onnx`
    record = threshold_record(source, pc, remedy="the run's ODS threshold cannot be recorded; export the run's "
                                                  "model.pt instead (cut at its predict.threshold)")
    size = int(getattr(model, "fixed_input_size", None) or ckpt.get("image_size", 256))
    if dynamic and getattr(model, "fixed_input_size", None):
        raise CracksegError(f"backbone {name!r} takes only {size}x{size} inputs; export it without --dynamic")
    wrapped = _Exported(model).eval()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        exporter = _export(wrapped, tmp, size, opset, dynamic, name)
        if not dynamic:
            _constant_resize_scales(tmp)
        sizes: tuple[int, ...] = (size, _second_size(size, wrapped.multiple)) if dynamic else (size,)
        refs = _references(wrapped, sizes)
        fp32 = _parity(tmp, refs, sizes, record["value"], "fp32")
        if fp32 is None:
            if dynamic:
                raise CracksegError(f"backbone {name!r}: its ONNX graph fixes the input size (it fails at "
                                    f"{sizes[-1]}x{sizes[-1]}); export it without --dynamic")
            raise CracksegError(f"backbone {name!r}: onnxruntime cannot run its ONNX graph on {size}x{size} "
                                f"images; it cannot be exported faithfully")
        if fp32.failure():
            raise CracksegError(f"backbone {name!r}: {fp32.failure()}" + ("; try without --dynamic" if dynamic else ""))
        parities = [fp32]
        if fp16:  # judged on images like those it will see: the run's training images, where there is a run folder
            _to_fp16(tmp)
            windows = _run_windows(_run_folder(source), sizes)
            half = _parity(tmp, refs if windows is None else _references(wrapped, sizes, inputs=windows), sizes,
                           record["value"], "fp16")
            if half is None or half.failure():
                why = half.failure() if half else "onnxruntime cannot run its half-precision graph"
                raise CracksegError(f"backbone {name!r}: {why}" + ("" if half else "; export it without --fp16"))
            parities.append(half)
        max_diff = parities[-1].onnx_vs_torch
        check = None
        if run_dir is not None:
            check = _to_int8(tmp, model, pc, run_dir, size, calibration or CALIBRATION_WINDOWS,
                             CHECK_IMAGES if check_images is None else check_images, record["value"])
        meta = {
            "format": META_FORMAT, "crackseg_version": __version__, "exporter": exporter, "opset": opset,
            "image_size": size, "dynamic": dynamic, "size_multiple": wrapped.multiple,
            "input": "float32 [N,3,H,W] RGB in [0,1]", "output": "float32 [N,1,H,W] crack probability",
            "precision": "fp16" if fp16 else "int8" if int8 else "fp32",
            "backbone": {k: ckpt["backbone"].get(k) for k in ("name", "params", "plugin", "distribution", "version")},
            # predict.threshold: the recorded threshold too, so that an earlier crackseg cuts the same masks
            "predict": {**pc, "threshold": record["value"]},
            "threshold": record,
            "placeholder": getattr(model, "placeholder", None),
            "source": str(source),
            "parity": [asdict(c) for c in parities],
        }
        if check is not None:
            meta["int8"] = {"quantization": INT8_SCHEME, **asdict(check)}
        _write_metadata(tmp, meta)
        os.replace(tmp, out)
    except Exception as exc:  # a full disk, a read-only folder: one line naming --out (an earlier file is kept)
        stored = storage_error(exc, out)
        if stored is None or stored is exc:
            raise
        raise stored from exc
    finally:
        if tmp.exists():
            tmp.unlink()
        for extra in (".data", ".fp32", ".pre"):
            data = tmp.with_name(tmp.name + extra)
            if data.exists():
                data.unlink()
    return ExportResult(out, exporter, max_diff, sizes, meta, check, tuple(parities))


def _second_size(size: int, multiple: int) -> int:
    """A second window size for the parity check: about 1.5× and a multiple of ``multiple``, not square-aligned."""
    m = max(1, multiple)
    return max(m, int(round(size * 1.5 / m)) * m)


def _export(wrapped: torch.nn.Module, path: Path, size: int, opset: int, dynamic: bool, name: str) -> str:
    example = (torch.rand(2, 3, size, size),)
    errors: list[str] = []
    logging.disable(logging.WARNING)  # the exporters log pages of internals; failures are reported below
    try:
        exporter = _export_quietly(wrapped, path, example, opset, dynamic, errors)
    finally:
        logging.disable(logging.NOTSET)
    if exporter:
        return exporter
    raise CracksegError(f"backbone {name!r} cannot be exported to ONNX ({'; '.join(errors)})")


def _export_quietly(wrapped: torch.nn.Module, path: Path, example: tuple[torch.Tensor], opset: int, dynamic: bool,
                    errors: list[str]) -> str:
    """Export with ``torch.export``, else with the TorchScript exporter; the exporter's name, or "" (see errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            batch = torch.export.Dim("batch", min=1, max=1024)
            shapes: dict[int, Any] = {0: batch}
            if dynamic:
                shapes.update({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO})
            torch.onnx.export(wrapped, example, str(path), input_names=["image"], output_names=["prob"],
                              opset_version=opset, dynamo=True, dynamic_shapes={"image": shapes},
                              external_data=False, verbose=False)
            return "torch.export"
        except Exception as exc:  # noqa: BLE001 - any exporter failure: try the other exporter
            _raise_refused_write(exc, path)
            errors.append(f"torch.export: {first_line(exc)}")
        axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            torch.onnx.export(wrapped, example, str(path), input_names=["image"], output_names=["prob"],
                              opset_version=opset, dynamo=False, dynamic_axes={"image": axes, "prob": axes})
            return "torchscript"
        except Exception as exc:  # noqa: BLE001
            _raise_refused_write(exc, path)
            errors.append(f"torchscript: {first_line(exc)}")
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
    return ""


def _constant_resize_scales(path: Path) -> int:
    """Give the upsampling ``Resize`` nodes of a fixed-size graph constant integer scales instead of the sizes the
    exporter computes at run time (``Shape`` → ``Concat``), and drop that arithmetic: the same result, and
    onnxruntime can then keep the decoder in its blocked conv layout (fp32) or in uint8 (int8) instead of
    converting each feature map back to read its shape (5% here on a U-Net). Returns the nodes changed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no shapes, nothing to rewrite (the parity check follows either way)
        return 0
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
    changed = 0
    for node in model.graph.node:
        src, dst = shapes.get(node.input[0] if node.input else ""), shapes.get(node.output[0])
        if (node.op_type != "Resize" or len(node.input) != 4 or node.input[2] or not node.input[3]
                or any(a.name == "axes" for a in node.attribute) or not src or not dst or len(src) != 4
                or len(dst) != 4 or not all(src[1:] + dst[1:]) or src[1] != dst[1]
                or dst[2] % src[2] or dst[3] % src[3]):
            continue
        scales = np.array([1, 1, dst[2] // src[2], dst[3] // src[3]], np.float32)
        model.graph.initializer.append(numpy_helper.from_array(scales, f"{node.output[0]}_crackseg_scales"))
        node.input[2] = f"{node.output[0]}_crackseg_scales"
        del node.input[3]
        changed += 1
    if changed:
        _drop_dead_nodes(model)
        onnx.save(model, str(path))
    return changed


def _drop_dead_nodes(model: Any) -> None:
    """Remove the nodes (and initializers) nothing reads any more."""
    def reads(nodes: Any) -> set[str]:  # the inputs of nodes, those of their subgraphs (If, Loop) included
        names: set[str] = set()
        for n in nodes:
            names.update(n.input)
            for a in n.attribute:
                for g in [a.g] if a.HasField("g") else list(a.graphs):
                    names |= reads(g.node)
        return names

    outputs = {o.name for o in model.graph.output}
    while True:
        used = outputs | reads(model.graph.node)
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = reads(model.graph.node)
    for init in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(init)


def _raise_refused_write(exc: Exception, path: Path) -> None:
    """Re-raise ``exc`` when it is the file system refusing the write (a full disk, a read-only folder): that is
    no reason to think the backbone cannot be exported (:func:`export_onnx` names ``--out``)."""
    if storage_error(exc, path) is not None:
        raise exc


@dataclass
class _References:
    """The parity inputs (one batch of images per size) and torch's probabilities for them."""

    inputs: list[np.ndarray]
    fp32: list[np.ndarray]
    #: in float64; ``fp32`` again when the backbone has no float64 copy (``reference`` says which)
    fp64: list[np.ndarray]
    reference: str
    #: what the inputs are (:attr:`Parity.inputs`)
    label: str = "random"


def _references(wrapped: torch.nn.Module, sizes: tuple[int, ...], images: int = 2,
                inputs: tuple[list[np.ndarray], str] | None = None) -> _References:
    """Random ``[images, 3, s, s]`` inputs in [0, 1] for each size (seeded), or the given ``(inputs, label)``
    (:func:`_run_windows`), and the torch model's probabilities for them in float32 and in float64 (a deep copy
    ``.double()``: torch's own float32 error is measured against it)."""
    if inputs is None:
        gen = torch.Generator().manual_seed(0)
        xs, label = [torch.rand(images, 3, s, s, generator=gen) for s in sizes], "random"
    else:
        xs, label = [torch.from_numpy(x) for x in inputs[0]], inputs[1]
    with torch.no_grad():
        fp32 = [wrapped(x).numpy() for x in xs]
        try:
            double = copy.deepcopy(wrapped).double()
            fp64 = [double(x.double()).double().numpy() for x in xs]
            del double
        except Exception:  # noqa: BLE001 - a backbone that only runs in float32: judged against torch fp32
            return _References([x.numpy() for x in xs], fp32, fp32, "float32", label)
    if any(a.shape != b.shape for a, b in zip(fp32, fp64, strict=True)):
        return _References([x.numpy() for x in xs], fp32, fp32, "float32", label)
    return _References([x.numpy() for x in xs], fp32, fp64, "float64", label)


#: training images of a run whose windows judge an ``--fp16`` export
FP16_CHECK_IMAGES = 2


def _run_windows(run_dir: Path | None, sizes: tuple[int, ...],
                 images: int = FP16_CHECK_IMAGES) -> tuple[list[np.ndarray], str] | None:
    """The first ``images`` training images of a run (never one of its test split), resized to each size as
    ``--mode resize`` feeds them to the model (``[n, 3, s, s]`` in [0, 1]), and a label naming them; None without a
    run folder, or where its training images cannot be read."""
    if run_dir is None:
        return None
    from crackseg.config.run_folder import data_label

    try:
        data, train, _, _ = _training_split(run_dir)
        photos = [s.load_image() for s in train[:images]]
    except CracksegError:  # the run's data is not on this machine: random images (the printed line says so)
        return None
    if not photos:
        return None
    xs = []
    for size in sizes:
        rec = _WindowRecorder(size, "resize", 0.25)
        rec.predict_many(photos)
        xs.append(_as_input(np.stack(rec.windows)))
    return xs, f"{data.get('train_split', 'train')} images of {data_label(data)}"


def _training_split(run_dir: Path) -> tuple[dict[str, Any], list[Any], list[Any], str]:
    """A run's data section, its training samples outside its test split (what an export is calibrated and
    judged on: never a test image), its test samples and its metric protocol."""
    from crackseg.data.loading import train_samples
    from crackseg.evaluation.scoring import run_test_split

    data, tests, protocol = run_test_split(run_dir)
    test_stems = {s.stem for s in tests}
    return data, [s for s in train_samples(data) if s.stem not in test_stems], tests, protocol


def _parity(path: Path, refs: _References, sizes: tuple[int, ...], threshold: float, precision: str) -> Parity | None:
    """The ONNX graph ``path`` run by onnxruntime on the parity inputs, against torch (:func:`parity`); None when
    it cannot run them (e.g. a size the graph baked in: not a faithful export)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got: list[np.ndarray] = []
    for x, ref in zip(refs.inputs, refs.fp32, strict=True):
        try:
            out = np.asarray(session.run(None, {name: x})[0])
        except Exception:  # noqa: BLE001 - onnxruntime raises its own types
            return None
        if out.shape != ref.shape:
            return None
        got.append(out)
    return parity(refs.fp64, refs.fp32, got, threshold, precision=precision, sizes=sizes, reference=refs.reference,
                  inputs=refs.label)


def _to_fp16(path: Path) -> None:
    """Half-precision weights and arithmetic in place; float32 inputs and outputs (Casts at the edges)."""
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about every constant it clips to the fp16 range
        half = float16.convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    onnx.save(half, str(path))


def _write_metadata(path: Path, meta: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, default=str)
    model.producer_name = "crackseg"
    onnx.save(model, str(path))


# -- int8 ----------------------------------------------------------------------------------------------------
#: what ``--int8`` does (also in the metadata)
INT8_SCHEME = ("onnxruntime static QDQ: per-channel int8 weights, uint8 activations (MinMax calibration); "
               "the last convolution and the sigmoid in float")


def _run_folder(source: str | Path) -> Path | None:
    """The run folder of ``source`` (the folder itself, or the folder a model.pt / checkpoint.pt lies in)."""
    from crackseg.config.run_folder import CONFIG_FILE

    p = Path(source)
    folder = p if p.is_dir() else p.parent
    return folder if (folder / CONFIG_FILE).is_file() else None


class _WindowRecorder(WindowPredictor):
    """The windows the predictors would see (resized images or tiles), kept instead of predicted."""

    def __init__(self, size: int, mode: str, overlap: float) -> None:
        super().__init__(size, 64, mode, overlap)
        self.windows: list[np.ndarray] = []

    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        self.windows.extend(batch)
        return np.zeros(batch.shape[:3], np.float32)


def calibration_windows(images: list[Any], size: int, pc: dict[str, Any], count: int) -> tuple[np.ndarray, int]:
    """``uint8 [count, size, size, 3]`` windows of ``images`` (callables that load an RGB image) cut as the
    run predicts (``predict.mode``, ``tile_overlap``), from evenly spaced images, a few windows of each;
    and how many images they come from."""
    picks = np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int))
    per = -(-count // len(picks))
    out: list[np.ndarray] = []
    used = 0
    for i in picks:
        rec = _WindowRecorder(size, str(pc.get("mode", "auto")), float(pc.get("tile_overlap", 0.25)))
        rec.predict_many([images[i]()])
        step = max(1, len(rec.windows) // per)
        out.extend(rec.windows[::step][:per])
        used += 1
        if len(out) >= count:
            break
    return np.stack(out[:count]), used


def _as_input(batch: np.ndarray) -> np.ndarray:
    """uint8 NHWC windows → the graph's input, float32 NCHW in [0, 1] (as :class:`OnnxPredictor` feeds it)."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def _float_tail(model: Any) -> list[str]:
    """Names of the nodes from the graph's output back to its last convolution (included): kept in float."""
    producers = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    todo = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        names.append(node.name)
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            todo.extend(i for i in node.input if i)
    return names


def quantize_int8(src: str | Path, dst: str | Path, windows: np.ndarray, batch_size: int = 8) -> None:
    """Static QDQ int8 quantisation of the fp32 crackseg graph ``src`` into ``dst`` (:data:`INT8_SCHEME`),
    its activation ranges calibrated on ``windows`` (``uint8 [N, S, S, 3]``)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    pre = dst.with_name(dst.name + ".pre")
    batches = iter([_as_input(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)])
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(batches, None)
            return None if x is None else {name: x}

    logging.disable(logging.WARNING)  # the quantiser logs advice on every run
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            model = onnx.load(str(pre))
            for i, node in enumerate(model.graph.node):  # the exclusions below are by name
                node.name = node.name or f"crackseg_node_{i}"
            onnx.save(model, str(pre))
            quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=_float_tail(model))
    finally:
        logging.disable(logging.NOTSET)
        if pre.exists():
            pre.unlink()


def _to_int8(tmp: Path, model: torch.nn.Module, pc: dict[str, Any], run_dir: Path, size: int, calibration: int,
             check_images: int, threshold: float) -> Int8Check:
    """Quantise the checked fp32 graph ``tmp`` in place (calibrated on the run's training images) and measure
    what changed against it: ODS, and mask pixels flipped at ``threshold`` (the one recorded in the export), on
    the run's test images; speed on this CPU."""
    from crackseg.config.run_folder import data_label
    from crackseg.prediction.predictor import Predictor

    data, train, tests, protocol = _training_split(run_dir)  # never calibrate on a test image
    if not train:
        raise DataError(f"{run_dir}: --int8 found no training images (outside the test split) to calibrate on")
    windows, n_images = calibration_windows([s.load_image for s in train], size, pc, calibration)
    fp32 = tmp.with_name(tmp.name + ".fp32")
    os.replace(tmp, fp32)
    try:
        quantize_int8(fp32, tmp, windows)
    except Exception as exc:  # noqa: BLE001 - an op onnxruntime cannot quantise: one line, not a traceback
        _raise_refused_write(exc, tmp)
        raise CracksegError(f"this model cannot be quantised to int8 ({first_line(exc)}); "
                            f"export it without --int8") from None
    threads = torch.get_num_threads()
    batch = int(pc.get("batch_size", 4))
    mode, overlap = str(pc.get("mode", "auto")), float(pc.get("tile_overlap", 0.25))
    meta = {"image_size": size}
    ref = OnnxPredictor(open_session(fp32, threads=threads), meta, batch, mode, overlap)
    q8 = OnnxPredictor(open_session(tmp, threads=threads), meta, batch, mode, overlap)
    check = _compare(ref, q8, tests[:check_images], pc, protocol, threshold)
    eager = Predictor(model, size, "cpu", batch, mode, overlap)
    tiles = windows[: max(2 * batch, 8)]
    check.speed = _speeds({"torch": eager, "fp32": ref, "int8": q8}, tiles, batch)
    check.calibration = (f"{len(windows)} windows of {n_images} {data.get('train_split', 'train')} images "
                         f"of {data_label(data)}")
    check.tiles, check.batch_size, check.threads = len(tiles), batch, threads
    fp32.unlink()
    return check


def _compare(ref: OnnxPredictor, q8: OnnxPredictor, samples: list[Any], pc: dict[str, Any], protocol: str,
             threshold: float) -> Int8Check:
    """ODS of both models on ``samples`` (those with masks) and the share of mask pixels that flip at ``threshold``."""
    from crackseg.base.maps import crack_mask
    from crackseg.evaluation.metrics import MetricAccumulator
    from crackseg.prediction.windows import postprocess

    acc = {"fp32": MetricAccumulator(protocol), "int8": MetricAccumulator(protocol)}
    flipped = crack = pixels = 0
    erosion, minmax = int(pc.get("erosion_iterations", 0)), bool(pc.get("minmax_normalize", False))
    for s in samples:
        image = s.load_image()
        maps = {k: postprocess(p.predict_many([image])[0], erosion, minmax) for k, p in (("fp32", ref), ("int8", q8))}
        if s.has_mask:
            gt = s.mask()
            for k, u8 in maps.items():
                acc[k].add(s.stem, u8, gt)
        a, b = crack_mask(maps["fp32"], threshold), crack_mask(maps["int8"], threshold)
        flipped += int(np.count_nonzero(a != b))
        crack += int(np.count_nonzero(a))
        pixels += a.size
    ods = {k: (m.result().ods if len(m) else None) for k, m in acc.items()}
    return Int8Check(calibration="", images=len(samples), ods_fp32=_finite(ods["fp32"]), ods_int8=_finite(ods["int8"]),
                     threshold=threshold, flipped=flipped / max(pixels, 1),
                     flipped_of_crack=flipped / crack if crack else None)


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _speeds(predictors: dict[str, WindowPredictor], tiles: np.ndarray, batch: int, rounds: int = 3) -> dict[str, float]:
    """Images/s of each predictor's ``forward_batch`` on ``tiles``: median of alternating rounds, after a warm-up."""
    def rate(p: WindowPredictor) -> float:
        t0 = time.perf_counter()
        for i in range(0, len(tiles), batch):
            p.forward_batch(tiles[i : i + batch])
        return len(tiles) / (time.perf_counter() - t0)

    for p in predictors.values():
        p.forward_batch(tiles[:batch])
    rates: dict[str, list[float]] = {k: [] for k in predictors}
    for _ in range(rounds):
        for k, p in predictors.items():
            rates[k].append(rate(p))
    return {k: round(statistics.median(v), 3) for k, v in rates.items()}
