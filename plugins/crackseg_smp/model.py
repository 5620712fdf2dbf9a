"""Building smp models offline."""

from __future__ import annotations

from pathlib import Path

import torch

from crackseg import ConfigError, CracksegError


def build_smp(cls_name: str, encoder: str, encoder_weights: str | None, depth: int,
              in_channels: int) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    cls = getattr(smp, cls_name)
    if encoder not in smp.encoders.get_encoder_names():
        import difflib

        close = difflib.get_close_matches(encoder, smp.encoders.get_encoder_names(), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown smp encoder {encoder!r}{hint}")
    kwargs = dict(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=1)
    if cls_name not in ("Segformer",):
        kwargs["encoder_depth"] = depth
        if cls_name in ("Unet", "UnetPlusPlus", "MAnet") and depth != 5:
            kwargs["decoder_channels"] = (256, 128, 64, 32, 16)[:depth]
    try:
        model = cls(**kwargs)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"smp {cls_name} with encoder {encoder!r}: {exc}") from None
    if encoder_weights:
        path = Path(encoder_weights)
        if not path.is_file():
            raise CracksegError(f"{path}: encoder weights file not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        missing, unexpected = model.encoder.load_state_dict(state, strict=False)
        loaded = len(state) - len(unexpected)
        if loaded == 0:
            raise CracksegError(f"{path}: no tensor matches the {encoder} encoder; is it the right file?")
    # smp pads nothing itself: the pipeline pads to this multiple and crops back
    model.size_multiple = 32
    return model
