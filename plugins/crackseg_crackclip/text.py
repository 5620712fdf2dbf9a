"""Text features of a prompt set: one unit vector per class, as in CrackCLIP / APRIL-GAN.

For each class every sentence is encoded by the frozen text tower (final norm
and text projection included), each embedding is L2-normalised, the
embeddings are averaged (flat mean over all state × template sentences) and
the mean is re-normalised. The result is the matrix ``[D, 2]`` with columns
``normal``, ``crack``.

Results are memoised per (weights fingerprint, sentences) so that building the
backbone twice, or evaluating after training, encodes the sentences once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from .prompts import CLASSES

_MEMO: dict[tuple[str, str], torch.Tensor] = {}
_MEMO_MAX = 16


def sentences_digest(sentences: dict[str, list[str]]) -> str:
    """A stable digest of the sentences of both classes."""
    h = hashlib.sha1()
    for cls in CLASSES:
        for s in sentences[cls]:
            h.update(cls.encode() + b"\x00" + s.encode("utf-8") + b"\x01")
    return h.hexdigest()


@torch.no_grad()
def encode_class(clip: Any, tokenizer: Any, sentences: list[str], batch_size: int = 256) -> torch.Tensor:
    """Unit-norm mean of the unit-norm embeddings of ``sentences`` → ``[D]``."""
    device = next(clip.parameters()).device
    chunks = []
    for i in range(0, len(sentences), batch_size):
        tokens = tokenizer(sentences[i : i + batch_size]).to(device)
        emb = encode_text(clip, tokens).float()
        chunks.append(emb / emb.norm(dim=-1, keepdim=True))
    mean = torch.cat(chunks).mean(dim=0)
    return mean / mean.norm()


def encode_text(clip: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``clip.encode_text(tokens)``, skipping the padding after the longest sentence when exact.

    A CLIP text tower is causal and pools at the end-of-text token (the largest
    token id), so positions after the longest sentence never influence the
    result; cutting them makes encoding the ~770 prompt sentences several times cheaper.
    Other text towers use ``encode_text`` unchanged.
    """
    mask = getattr(clip, "attn_mask", None)
    trimmable = (
        getattr(clip, "text_pool_type", None) == "argmax"
        and isinstance(mask, torch.Tensor)
        and mask.ndim == 2
        and bool(torch.isinf(mask.triu(1)).all())
        and bool((mask.tril() == 0).all())
        and hasattr(clip, "token_embedding")
        and isinstance(getattr(clip, "text_projection", None), torch.Tensor)
    )
    if not trimmable:
        return clip.encode_text(tokens)
    n = int(tokens.argmax(dim=-1).max()) + 1  # last end-of-text position
    t = tokens[:, :n]
    dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(t).to(dtype) + clip.positional_embedding[:n].to(dtype)
    x = clip.transformer(x, attn_mask=mask[:n, :n])
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), t.argmax(dim=-1)]
    return x @ clip.text_projection


def text_matrix(clip: Any, tokenizer: Any, sentences: dict[str, list[str]], fingerprint: str) -> torch.Tensor:
    """``[D, 2]`` text features (columns normal, crack), on the CPU, memoised."""
    key = (fingerprint, sentences_digest(sentences))
    cached = _MEMO.get(key)
    if cached is not None:
        return cached
    was_training = clip.training
    clip.eval()
    try:
        cols = [encode_class(clip, tokenizer, sentences[c]) for c in CLASSES]
    finally:
        clip.train(was_training)
    mat = torch.stack(cols, dim=1).cpu()
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = mat
    return mat
