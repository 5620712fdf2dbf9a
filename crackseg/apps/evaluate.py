"""``crackseg evaluate``: score saved probability maps against masks, without torch.

Three sources (:func:`score`): a run folder (its ``predictions/`` against its own test split), a
folder of maps against a folder of masks, or a folder of maps against the masks of a dataset split.
Nothing is written into the inputs; :func:`write_prf` writes the P/R/F table where asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crackseg.base.console import warn
from crackseg.base.errors import CracksegError, DataError
from crackseg.base.protocols import PROTOCOLS
from crackseg.evaluation.metrics import MetricsResult, evaluate_dirs, write_prf_table

# Scoring two folders needs only the metrics: a run folder and a dataset split import what reads their
# configurations (crackseg.config, crackseg.evaluation.scoring) when they are scored, so the command starts fast.

#: :data:`crackseg.config.run_folder.CONFIG_FILE` (a test holds the two equal): what makes a folder a run folder
CONFIG_FILE = "config.yaml"


def score(pred_dir: str, gt_dir: str | None = None, data: str | None = None, split: str | None = None,
          protocol: str | None = None) -> tuple[MetricsResult, dict[str, Any]]:
    """The scores of ``pred_dir`` and what they were scored against (``data``, ``split``; empty for ``gt_dir``).

    ``protocol`` defaults to a run folder's ``eval.protocol``, else the first of
    :data:`~crackseg.config.run_config.PROTOCOLS`. A wrong combination of arguments is a one-line error.
    """
    if (Path(pred_dir) / CONFIG_FILE).is_file():
        res, info = score_run(pred_dir, gt_dir, data, split, protocol)
    else:
        res, info = score_folder(pred_dir, gt_dir, data, split, protocol)
    warn(empty_truth_warning(res))
    return res, info


def empty_truth_warning(res: MetricsResult) -> str:
    """A warning when every ground-truth mask is empty (ODS, OIS and AP are then undefined); else ''."""
    if res.gt_crack_pixels != 0:
        return ""
    return (f"every ground-truth mask is empty (no crack pixel in {res.n} masks): ODS, OIS and AP are undefined; "
            f"masks are read as crack where 1 when their values are only 0 and 1, else where > 127")


def score_run(run_dir: str, gt_dir: str | None, data: str | None, split: str | None,
              protocol: str | None) -> tuple[MetricsResult, dict[str, Any]]:
    """A run folder's ``predictions/`` scored against its own test split (it takes no GT_DIR, data or split)."""
    from crackseg.config.run_folder import data_label
    from crackseg.evaluation.scoring import run_test_split, score_predictions

    if gt_dir or data or split:
        raise CracksegError(f"{run_dir} is a run folder, scored against its own test split: it takes no "
                            f"GT_DIR, --data or --split (to score its predictions against other masks, pass "
                            f"{Path(run_dir) / 'predictions'})")
    preds = Path(run_dir) / "predictions"
    if not preds.is_dir():
        raise CracksegError(f"{run_dir}: run folder without predictions/ (the run has not finished; "
                            f"continue it with crackseg run --resume)")
    spec, samples, run_protocol = run_test_split(run_dir)
    info = {"data": data_label(spec), "split": spec["test_split"]}
    res = score_predictions(preds, samples, protocol or run_protocol,
                            f"the run's test split ({info['data']}, split {info['split']!r})", extra_ok=False)
    return res, info


def score_folder(pred_dir: str, gt_dir: str | None, data: str | None, split: str | None,
                 protocol: str | None) -> tuple[MetricsResult, dict[str, Any]]:
    """A folder of maps scored against ``gt_dir`` or split ``split`` (default ``test``) of dataset ``data``.

    When ``pred_dir`` lies in a run folder, the errors say how to score the run itself.
    """
    parent = Path(pred_dir).resolve().parent
    in_run = (parent / CONFIG_FILE).is_file()
    if not data and not gt_dir:
        hint = f", or pass the run folder {parent} itself" if in_run else ""
        raise CracksegError(f"{pred_dir}: not a run folder; give GT_DIR (a folder of masks) or --data DATASET "
                            f"[--split S]{hint}")
    if data and gt_dir:
        raise CracksegError("give GT_DIR or --data, not both")
    if gt_dir and split:
        raise CracksegError("--split selects a split of --data; with GT_DIR every mask in it is scored")
    info: dict[str, Any] = {}
    try:
        if data:
            from crackseg.config.run_folder import data_label
            from crackseg.evaluation.scoring import score_predictions, split_samples

            spec, samples = split_samples(data, split or "test")
            info = {"data": data_label(spec), "split": split or "test"}
            res = score_predictions(pred_dir, samples, protocol or PROTOCOLS[0],
                                    f"{info['data']} split {info['split']!r}")
        else:
            res = evaluate_dirs(pred_dir, str(gt_dir), protocol or PROTOCOLS[0])
    except DataError as exc:
        if not in_run:
            raise
        raise DataError(f"{exc}; {parent} is a run folder: crackseg evaluate {parent} scores its predictions "
                        f"against its own test split") from None
    return res, info


def write_prf(res: MetricsResult, path: str) -> str | None:
    """Write the per-threshold P/R/F table to ``path``; a warning (the scores stand) when it cannot be written."""
    try:
        write_prf_table(res, path)
    except OSError as exc:
        return f"{path}: cannot write the P/R/F table ({exc.strerror or exc}); the scores are unaffected"
    return None


def score_text(res: MetricsResult, info: dict[str, Any], prf: str | None) -> str:
    """The lines ``crackseg evaluate`` prints without ``--json`` (``prf``: the table written, if any)."""
    where = f" ({info['data']}, split {info['split']})" if info else ""
    lines = [f"protocol {res.protocol}, {res.n} images{where}",
             f"ODS {100 * res.ods:.2f}  OIS {100 * res.ois:.2f}  AP {100 * res.ap:.2f}  (%)"]
    if prf:
        lines.append(f"P/R/F per threshold: {prf}")
    return "\n".join(lines)
