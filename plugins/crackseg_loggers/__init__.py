"""crackseg's built-in training loggers: ``csv`` (``RUN/history.csv``) and ``tensorboard`` (when installed)."""

from __future__ import annotations

import csv
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crackseg
from crackseg import CracksegError, write_text


class CsvLogger:
    """One row per epoch in ``RUN/history.csv`` (rewritten atomically, so it never holds half a row)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.path: Path | None = None
        self.rows: list[dict[str, Any]] = []

    def start(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self.path = Path(run_dir) / self.file
        self.rows = list(history)  # a resumed run keeps its earlier epochs

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        assert self.path is not None
        write_text(self.path, buf.getvalue())

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Each epoch's numbers as TensorBoard scalars in ``RUN/tensorboard/``."""

    def __init__(self, folder: str) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise CracksegError("logger 'tensorboard' needs the tensorboard package (pip install tensorboard)")
        self.folder = folder
        self.writer: Any = None

    def start(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / self.folder))

    def log_epoch(self, row: dict[str, Any]) -> None:
        step = int(row.get("epoch", 0))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class CsvParams:
    #: file name inside the run folder
    file: str = "history.csv"


@dataclass
class TensorBoardParams:
    #: folder inside the run folder
    folder: str = "tensorboard"


@crackseg.hookimpl
def register_loggers(register: Any) -> None:
    register("csv", CsvLogger, params=CsvParams, description="one row per epoch in RUN/history.csv", default=True)
    register("tensorboard", TensorBoardLogger, params=TensorBoardParams,
             description="TensorBoard scalars in RUN/tensorboard/ (used by default when tensorboard is installed)",
             default=importlib.util.find_spec("tensorboard") is not None)
