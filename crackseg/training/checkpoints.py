"""Checkpoint files: the format, what a model keeps, reading and writing them safely (torch).

A checkpoint (written by :class:`crackseg.training.engine.Engine`, atomically, after every epoch) is
a dict of tensors and plain data that ``torch.load(weights_only=True)`` reads: ``format``
(2), ``kind`` (``segmentation`` or ``patch-classifier``), ``model`` (the model's checkpoint
state), ``optimizer``/``scheduler``/``scaler`` state, ``epoch``, ``step``, ``done``,
``history``, ``trainer`` (the trainer's own state) and the writer's metadata: for a
segmentation run ``backbone`` (name, params and the plugin that provides it: enough to
rebuild the model), ``image_size``, ``predict`` settings and ``crackseg_version``. Format 1
(segmentation only, before the engine) is still read.

A finished run also keeps ``model.pt`` (:func:`write_model_file`): the same dict without the
training state (optimizer, scheduler, scaler, trainer). The last checkpoint of a finished run keeps no
optimizer, scheduler or scaler state either (nothing is left to resume), a third of the size. Loading a run's
model (:func:`find_checkpoint`) prefers it; ``--resume`` reads ``checkpoint.pt``. Rebuilding a backbone
from a file is the factory's job (:func:`crackseg.load_model`), which calls this module.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import torch

from crackseg.base.errors import CracksegError, DataError
from crackseg.base.io import atomic_write

CHECKPOINT_FORMAT = 2
CHECKPOINT_FILE = "checkpoint.pt"
#: a finished run's weights without the training state (what predict, export and evaluate load)
MODEL_FILE = "model.pt"
#: the checkpoint keys only resuming needs, left out of ``model.pt``
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "trainer")
#: formats this release reads: 1 (segmentation checkpoints before the engine) and 2
READABLE_FORMATS = (1, 2)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of ``model``: ``checkpoint_state_dict()`` if it has one, else ``state_dict()``."""
    fn = getattr(model, "checkpoint_state_dict", None)
    sd = fn() if callable(fn) else model.state_dict()
    return {k: v.detach().cpu() for k, v in sd.items()}


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put a :func:`model_state` back (``load_checkpoint_state_dict`` if the model has one)."""
    fn = getattr(model, "load_checkpoint_state_dict", None)
    if callable(fn):
        fn(state)
    else:
        model.load_state_dict(state)


def read_torch_file(path: str | Path, what: str = "checkpoint", hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing or unreadable file is one DataError line.

    ``what`` names the file in messages ("classifier weights file"); ``hint`` says what to do.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {what} not found" + (f"; {hint}" if hint else ""))
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is the file's fault
        if "Weights only load failed" in str(exc):  # not PyTorch's advice to load it unsafely: say what it is
            import re

            found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
            obj = f" of {found.group(1)}" if found else ""
            raise DataError(f"{p}: the {what} holds code (a pickled object{obj}) and was not loaded, for safety; "
                            f"it must be a checkpoint written by crackseg or plain weights (tensors)"
                            + (f"; {hint}" if hint else "")) from None
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{p}: cannot read {what} ({type(exc).__name__}: {detail})"
                        + (f"; {hint}" if hint else "")) from None


def read_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """Load a training checkpoint of ``kind`` safely; another kind or file is one line naming it."""
    p = Path(path)
    ckpt = read_torch_file(p)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in READABLE_FORMATS:
        raise CracksegError(f"{p}: not a crackseg checkpoint")
    found = ckpt.get("kind", "segmentation")  # format 1 held segmentation checkpoints only
    if found != kind:
        raise CracksegError(f"{p}: a {found} checkpoint, not a {kind} one")
    return ckpt


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a crackseg segmentation checkpoint safely, naming the file on error."""
    p = Path(path)
    ckpt = read_checkpoint(p, "segmentation")
    if "backbone" not in ckpt:
        raise CracksegError(f"{p}: not a crackseg segmentation checkpoint (no backbone recorded)")
    return ckpt


def write_model_file(checkpoint_path: str | Path, model_path: str | Path | None = None) -> Path | None:
    """Write ``model_path`` (default: ``model.pt`` beside the checkpoint), atomically: the checkpoint minus
    its :data:`TRAINING_STATE`. Returns its path; None when there is no checkpoint to copy."""
    src = Path(checkpoint_path)
    if not src.is_file():
        return None
    ckpt = read_torch_file(src)
    slim = {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}
    dst = Path(model_path) if model_path is not None else src.with_name(MODEL_FILE)
    return atomic_write(dst, lambda tmp: torch.save(slim, tmp))


def snapshot(obj: Any, reuse: Any = None) -> Any:
    """A copy of a checkpoint payload that training can no longer change: every tensor copied to the CPU,
    every dict, list and tuple rebuilt (the optimizer's moments and the history change in place).

    ``reuse``: an earlier snapshot of the same structure, no longer needed: its tensors are overwritten
    instead of new ones allocated (an epoch's copy then costs a memory copy, not fresh pages).
    """
    if isinstance(obj, torch.Tensor):
        src = obj.detach()
        if (isinstance(reuse, torch.Tensor) and reuse.shape == src.shape and reuse.dtype == src.dtype
                and reuse.device.type == "cpu"):
            return reuse.copy_(src)
        return src.to("cpu", copy=True)
    if isinstance(obj, dict):
        old = reuse if isinstance(reuse, dict) else {}
        return {k: snapshot(v, old.get(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        olds = list(reuse) if isinstance(reuse, type(obj)) and len(reuse) == len(obj) else [None] * len(obj)
        items = [snapshot(v, o) for v, o in zip(obj, olds)]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return copy.deepcopy(obj)


class CheckpointWriter:
    """Writes checkpoints atomically, one at a time, in a background thread, so training goes on meanwhile.

    :meth:`write` takes a :func:`snapshot` of the payload first (a copy of the weights and optimizer
    state: memory for one more checkpoint while a write is in flight), waits for the write before it
    (so at most one is in flight and files land in order) and, with ``wait``, writes in this thread.
    A killed process leaves the previous checkpoint whole (atomic rename) and a temporary file that
    the next start removes; ``--resume`` continues from the previous checkpoint, to the same result.
    A failed background write (a full disk) is raised by the next :meth:`write` or :meth:`wait`.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, path: Path, payload: dict[str, Any], *, wait: bool = False, frozen: bool = False) -> None:
        """Write ``payload`` to ``path`` (``frozen``: it is a :func:`snapshot` already)."""
        self.wait()
        frozen_payload = payload if frozen else snapshot(payload)
        if wait:
            _save(path, frozen_payload)
            return
        self._thread = threading.Thread(target=self._run, args=(path, frozen_payload), name="crackseg-checkpoint")
        self._thread.start()  # not a daemon: the interpreter finishes the write before it exits (Ctrl-C included)

    def _run(self, path: Path, frozen: dict[str, Any]) -> None:
        try:
            _save(path, frozen)
        except BaseException as exc:  # noqa: BLE001 - raised again in the training thread
            self._error = exc

    def wait(self) -> None:
        """Block until the write in flight is on disk; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    @property
    def busy(self) -> bool:
        """Whether a write is in flight."""
        return self._thread is not None and self._thread.is_alive()


def _save(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))  # a full disk: one StorageError line


def find_checkpoint(source: str | Path) -> Path:
    """The model file of a run folder (``model.pt``, else ``checkpoint.pt``), or ``source`` itself when it is a file.

    A ``model.pt`` older than the folder's ``checkpoint.pt`` is stale (training went on since): the checkpoint wins.
    """
    p = Path(source)
    if p.is_dir():
        model, ckpt = p / MODEL_FILE, p / CHECKPOINT_FILE
        stale = model.is_file() and ckpt.is_file() and ckpt.stat().st_mtime_ns > model.stat().st_mtime_ns
        p = model if model.is_file() and not stale else ckpt
    if not p.is_file():
        raise CracksegError(f"{source}: no checkpoint found (give a run folder, a model.pt or a checkpoint.pt file)")
    return p
