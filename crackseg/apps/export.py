"""``crackseg export``: a finished run's backbone as one self-describing ONNX file.

The graph takes ``float32 [N, 3, S, S]`` RGB in [0, 1] (``image / 255``) and returns the crack
probability ``float32 [N, 1, S, S]``: the backbone's input normalisation, its padding to a size
multiple and the sigmoid are inside the graph. ``S`` is the run's window size (any height and
width with ``dynamic``). The run's prediction settings (threshold, resize or tile, erosion, …),
the backbone's name, parameters and plugin go into the model's metadata (``crackseg`` key), so
the file alone is enough for ``crackseg predict model.onnx photos/``.

Export tries ``torch.export`` (the dynamo exporter) first and falls back to the TorchScript
exporter (with PyTorch's fused-attention fast path off, which it cannot export); the exported
file is then checked against the torch model with onnxruntime on random inputs (max |Δp| ≤ 1e-4,
at a second window size with ``dynamic``) before it is moved into place.

With ``fp16`` the checked fp32 graph is converted to half-precision weights and arithmetic
(onnxconverter-common; inputs and outputs stay float32, numerically fragile ops stay fp32) and
checked again, against the same torch model, with a tolerance for half precision (5e-2).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crackseg.base.console import first_line
from crackseg.base.errors import CracksegError
from crackseg.base.storage import storage_error
from crackseg.base.version import __version__
from crackseg.prediction.onnx_predictor import META_KEY
from crackseg.training.backbones import as_outputs, input_stats, pad_to_multiple, size_multiple
from crackseg.training.factory import load_model

#: the version of what the metadata (key ``onnx_model.META_KEY``) holds
META_FORMAT = 1
#: fp32 ONNX vs torch: the largest difference of probabilities an export may show
PARITY_TOLERANCE = 1e-4
#: the same for an fp16 export: half precision carries about three decimal digits, and random inputs
#: drive activations far harder than photos (unet: 0.019 on random inputs, 0.007 on photos)
FP16_TOLERANCE = 5e-2


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
class ExportResult:
    path: Path
    exporter: str
    max_diff: float
    sizes: tuple[int, ...]
    metadata: dict[str, Any]


def export_onnx(source: str | Path, out: str | Path, *, opset: int = 18, dynamic: bool = False,
                fp16: bool = False) -> ExportResult:
    """Export the backbone of a run folder or checkpoint to ``out`` (checked, then written atomically)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        if fp16:
            import onnxconverter_common  # noqa: F401
    except ModuleNotFoundError as exc:
        raise CracksegError(f"crackseg export{' --fp16' if fp16 else ''} needs the {exc.name!r} package; "
                            f"pip install 'crackseg[onnx]'") from None
    out = Path(out)
    if out.suffix != ".onnx":
        raise CracksegError(f"--out {out}: the file name must end in .onnx")
    if not 14 <= opset <= 23:
        raise CracksegError(f"--opset {opset}: must be between 14 and 23")
    model, ckpt = load_model(source)
    model.eval()
    name = str(ckpt["backbone"]["name"])
    size = int(getattr(model, "fixed_input_size", None) or ckpt.get("image_size", 256))
    if dynamic and getattr(model, "fixed_input_size", None):
        raise CracksegError(f"backbone {name!r} takes only {size}x{size} inputs; export it without --dynamic")
    wrapped = _Exported(model).eval()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        exporter = _export(wrapped, tmp, size, opset, dynamic, name)
        sizes: tuple[int, ...] = (size, _second_size(size, wrapped.multiple)) if dynamic else (size,)
        max_diff = _parity(wrapped, tmp, sizes)
        if dynamic and max_diff == float("inf"):
            raise CracksegError(f"backbone {name!r}: its ONNX graph fixes the input size (it fails at "
                                f"{sizes[-1]}x{sizes[-1]}); export it without --dynamic")
        if not max_diff <= PARITY_TOLERANCE:
            raise CracksegError(f"backbone {name!r}: the ONNX graph differs from the torch model by {max_diff:.2g} "
                                f"(> {PARITY_TOLERANCE:g}); it cannot be exported faithfully"
                                + ("; try without --dynamic" if dynamic else ""))
        if fp16:
            _to_fp16(tmp)
            max_diff = _parity(wrapped, tmp, sizes)
            if not max_diff <= FP16_TOLERANCE:
                raise CracksegError(f"backbone {name!r}: in half precision the ONNX graph differs from the torch "
                                    f"model by {max_diff:.2g} (> {FP16_TOLERANCE:g}); export it without --fp16")
        meta = {
            "format": META_FORMAT, "crackseg_version": __version__, "exporter": exporter, "opset": opset,
            "image_size": size, "dynamic": dynamic, "size_multiple": wrapped.multiple,
            "input": "float32 [N,3,H,W] RGB in [0,1]", "output": "float32 [N,1,H,W] crack probability",
            "precision": "fp16" if fp16 else "fp32",
            "backbone": {k: ckpt["backbone"].get(k) for k in ("name", "params", "plugin", "distribution", "version")},
            "predict": dict(ckpt.get("predict") or {}),
            "placeholder": getattr(model, "placeholder", None),
            "source": str(source),
        }
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
        data = tmp.with_name(tmp.name + ".data")
        if data.exists():
            data.unlink()
    return ExportResult(out, exporter, max_diff, sizes, meta)


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


def _raise_refused_write(exc: Exception, path: Path) -> None:
    """Re-raise ``exc`` when it is the file system refusing the write (a full disk, a read-only folder): that is
    no reason to think the backbone cannot be exported (:func:`export_onnx` names ``--out``)."""
    if storage_error(exc, path) is not None:
        raise exc


def _parity(wrapped: torch.nn.Module, path: Path, sizes: tuple[int, ...]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for s in sizes:
        x = torch.rand(2, 3, s, s, generator=gen)
        with torch.no_grad():
            ref = wrapped(x).numpy()
        try:
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        except Exception:  # noqa: BLE001 - e.g. a size the graph baked in: not a faithful export
            return float("inf")
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


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
