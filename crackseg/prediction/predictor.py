"""Applying a trained torch backbone to images of any size (resizing and tiling: ``windows``)."""

from __future__ import annotations

import numpy as np
import torch

from crackseg.plugins.blame import blamed, plugin_error
from crackseg.prediction.windows import WindowPredictor, postprocess
from crackseg.training.backbones import as_outputs, input_stats, output_problem, pad_to_multiple, size_multiple
from crackseg.training.precision import amp_dtype

__all__ = ["Predictor", "postprocess"]


class Predictor(WindowPredictor):
    """Batched inference for one torch model on one device."""

    def __init__(self, model: torch.nn.Module, size: int, device: str, batch_size: int = 4,
                 mode: str = "auto", overlap: float = 0.25, precision: str = "32", name: str = "") -> None:
        """``name``: the backbone's registered name, so that a failing forward pass names its plugin."""
        super().__init__(int(getattr(model, "fixed_input_size", None) or size), batch_size, mode, overlap)
        self.model = model.to(device).eval()
        self.name = name
        self.device = device
        mean, std = input_stats(model)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.multiple = size_multiple(model)
        self.amp = amp_dtype(precision, device)

    # -- low level --------------------------------------------------------------
    @torch.no_grad()
    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 [N,S,S,3]`` → crack probability ``float32 [N,S,S]``."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - self.mean) / self.std).to(self.device)
        x, h, w = pad_to_multiple(x, self.multiple)
        with torch.autocast("cuda", dtype=self.amp, enabled=self.amp is not None), \
                blamed("backbones", self.name, "the forward pass"):
            outs = as_outputs(self.model(x))
        problem = output_problem(outs, x.shape[0], x.shape[-2], x.shape[-1])
        if problem:
            raise plugin_error("backbones", self.name, problem)
        out = outs["out"]
        return torch.sigmoid(out[:, 0, :h, :w].float()).cpu().numpy()
