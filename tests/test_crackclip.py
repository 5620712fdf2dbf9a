"""The crackclip backbones on a tiny random open_clip ViT (CPU, no downloads)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import crackseg
from crackseg.base.errors import ConfigError, CracksegError
from crackseg.testing import BackboneContract

torch.set_num_threads(1)

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_ADAPTER_PARAMS = 4 * (64 * 32 + 32)
SIZE = 64


# -- the public backbone contract --------------------------------------------------------------
_CONTRACT_CFG = Path(tempfile.mkdtemp(prefix="crackclip-tiny-")) / "crackclip-tiny-contract.json"
_CONTRACT_CFG.write_text(json.dumps(TINY_CFG))
_CONTRACT_PARAMS = {"model": str(_CONTRACT_CFG), "image_size": SIZE, "layers": [1, 2, 3, 4],
                    "random_init": True, "token_cache": "off"}


@pytest.mark.filterwarnings("ignore:crackclip.*RANDOM weights")
class TestCrackCLIPContract(BackboneContract):
    name = "crackclip"
    params = _CONTRACT_PARAMS


@pytest.mark.filterwarnings("ignore:crackclip.*RANDOM weights")
class TestCrackCLIPZeroshotContract(BackboneContract):
    name = "crackclip-zeroshot"
    params = _CONTRACT_PARAMS

    def test_backward_reaches_trainable_parameters(self) -> None:
        model = self.make()
        assert not any(p.requires_grad for p in model.parameters())  # nothing to train by design


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cfg") / "crackclip-tiny-test.json"
    path.write_text(json.dumps(TINY_CFG))
    return str(path)


def build(tiny_cfg: str, name: str = "crackclip", **params: Any) -> Any:
    params.setdefault("image_size", SIZE)
    params.setdefault("layers", [1, 2, 3, 4])
    if "weights" not in params and "pretrained" not in params:
        params.setdefault("random_init", True)
    params.setdefault("token_cache", "off")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return crackseg.create_backbone(name, model=tiny_cfg, **params)


@pytest.fixture(scope="module")
def model(tiny_cfg: str) -> Any:
    torch.manual_seed(0)
    return build(tiny_cfg)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def reference_maps(m: Any, x: torch.Tensor, zeroshot: bool = False) -> list[torch.Tensor]:
    """The authors' pipeline written out step by step: crack probability per stage."""
    clip, visual = m.clip, m.clip.visual
    with torch.no_grad():
        t = visual.conv1(x).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.expand(x.shape[0], 1, -1)
        t = visual.ln_pre(torch.cat([cls, t], dim=1) + visual.positional_embedding)
        tokens = []
        for i, blk in enumerate(visual.transformer.resblocks):
            t = blk(t)
            if i + 1 in m.layers:
                tokens.append(t)
        # text: each sentence normalised, flat mean, re-normalised; columns normal, crack
        cols = []
        for cls_name in ("normal", "crack"):
            emb = clip.encode_text(m._tokenizer(m._sentences[cls_name]))
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(0)
            cols.append(mean / mean.norm())
        text = torch.stack(cols, dim=1)
        probs = []
        for i, tok in enumerate(tokens):
            tok = tok[:, 1:, :]
            f = visual.ln_post(tok) @ visual.proj if zeroshot else m.adapters[i](tok)
            f = f / f.norm(dim=-1, keepdim=True)
            amap = 100.0 * f @ text
            b, n, _ = amap.shape
            h = int(n**0.5)
            amap = amap.permute(0, 2, 1).reshape(b, 2, h, h)
            amap = F.interpolate(amap, size=x.shape[-2:], mode="bilinear", align_corners=True)
            probs.append(torch.softmax(amap, dim=1)[:, 1:2])
    return probs


# -- shapes and the map pipeline ------------------------------------------------------------
def test_outputs_shapes_and_attributes(model: Any, batch: torch.Tensor) -> None:
    out = model(batch)
    assert set(out) == {"stage1", "stage2", "stage3", "stage4", "out"}
    for v in out.values():
        assert v.shape == (2, 1, SIZE, SIZE)
        assert torch.isfinite(v).all()
    assert model.fixed_input_size == SIZE
    assert model.loss_weights == {f"stage{i}": 1.0 for i in range(1, 5)}
    assert model.input_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert model.input_std == pytest.approx((0.26862954, 0.26130258, 0.27577711))


def test_stage_maps_follow_the_authors_pipeline(model: Any, batch: torch.Tensor) -> None:
    out = model(batch)
    probs = reference_maps(model, batch)
    for i, p in enumerate(probs):
        torch.testing.assert_close(torch.sigmoid(out[f"stage{i + 1}"]), p, atol=2e-5, rtol=1e-4)
    fused = torch.stack(probs).sum(0) / 4  # the authors' sum of 4 stages, scaled to [0, 1]
    torch.testing.assert_close(torch.sigmoid(out["out"]), fused.clamp(1e-6, 1 - 1e-6), atol=2e-5, rtol=1e-4)


def test_text_matrix_is_unit_columns_normal_then_crack(model: Any) -> None:
    text = model.prepare_text()
    assert text.shape == (32, 2)
    torch.testing.assert_close(text.norm(dim=0), torch.ones(2))
    # the trimmed text encoder equals open_clip's full-context encode_text
    from crackseg_crackclip.text import encode_text

    tokens = model._tokenizer(model._sentences["crack"][:20] + ["a photo of a pavement!"])
    with torch.no_grad():
        torch.testing.assert_close(encode_text(model.clip, tokens), model.clip.encode_text(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_wrong_input_size_is_a_clear_error(model: Any) -> None:
    with pytest.raises(CracksegError, match=r"\[B,3,64,64\]"):
        model(torch.zeros(1, 3, 48, 48))


def test_custom_layers_give_one_map_per_stage(tiny_cfg: str) -> None:
    m = build(tiny_cfg, layers=[2, 4])
    out = m(torch.zeros(1, 3, SIZE, SIZE))
    assert set(out) == {"stage1", "stage2", "out"}
    assert len(m.adapters) == 2
    assert m.loss_weights == {"stage1": 1.0, "stage2": 1.0}


def test_image_size_resizes_the_patch_grid(tiny_cfg: str) -> None:
    m = build(tiny_cfg, image_size=96)
    assert m.grid == (6, 6)
    assert m(torch.zeros(1, 3, 96, 96))["out"].shape == (1, 1, 96, 96)
    # not a multiple of the patch size (like ViT-B-16 at 518): grid = size // patch
    m = build(tiny_cfg, image_size=70)
    assert m.grid == (4, 4)
    assert m(torch.zeros(1, 3, 70, 70))["stage1"].shape == (1, 1, 70, 70)


# -- training contract ----------------------------------------------------------------------------
def test_gradients_reach_only_the_adapters(tiny_cfg: str, batch: torch.Tensor) -> None:
    m = build(tiny_cfg)
    m.train()
    assert not m.clip.training
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("adapters.") for n in trainable)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == TINY_ADAPTER_PARAMS
    out = m(batch)
    sum(v.sum() for k, v in out.items() if k != "out").backward()
    for n, p in m.named_parameters():
        if n.startswith("adapters."):
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_checkpoint_holds_only_adapters_and_reloads(tiny_cfg: str, model: Any, batch: torch.Tensor) -> None:
    sd = model.checkpoint_state_dict()
    assert set(sd) == {f"adapters.{i}.{w}" for i in range(4) for w in ("weight", "bias")}
    assert sum(v.numel() for v in sd.values()) == TINY_ADAPTER_PARAMS
    # a second model with the same frozen weights: load the adapters, same outputs
    other = build(tiny_cfg, random_init=False, weights=_save_clip(model, Path(tiny_cfg).parent / "w.pt"))
    assert not torch.equal(other.adapters[0].weight, model.adapters[0].weight)
    other.load_checkpoint_state_dict({k: v.clone() for k, v in sd.items()})
    torch.testing.assert_close(other(batch)["out"], model(batch)["out"], atol=0, rtol=0)
    with pytest.raises(ConfigError, match="missing"):
        other.load_checkpoint_state_dict({k: v for k, v in sd.items() if "3" not in k})
    bad = dict(sd)
    bad["adapters.0.weight"] = torch.zeros(32, 48)
    with pytest.raises(ConfigError, match="shape"):
        other.load_checkpoint_state_dict(bad)


def _save_clip(m: Any, path: Path) -> str:
    torch.save(m.clip.state_dict(), path)
    return str(path)


# -- weights -----------------------------------------------------------------------------------
def test_state_dict_reloads_offline_with_identical_outputs(
    tiny_cfg: str, model: Any, batch: torch.Tensor, tmp_path: Path
) -> None:
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in model.clip.state_dict().items()}}, wrapped)
    for path in (_save_clip(model, tmp_path / "plain.pt"), str(wrapped)):
        m = build(tiny_cfg, random_init=False, weights=path)
        m.load_checkpoint_state_dict(model.checkpoint_state_dict())
        for k, v in model.clip.state_dict().items():
            assert torch.equal(m.clip.state_dict()[k], v), k
        out_a, out_b = model(batch), m(batch)
        for k in out_a:
            torch.testing.assert_close(out_b[k], out_a[k], atol=0, rtol=0)


def test_safetensors_file_loads(tiny_cfg: str, model: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.clip.state_dict().items()}, str(path))
    m = build(tiny_cfg, random_init=False, weights=str(path))
    assert torch.equal(m.clip.visual.proj, model.clip.visual.proj)


class _Node(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Archive(torch.nn.Module):
    """A TorchScript module whose state dict has OpenAI's names (like ViT-L-14-336px.pt)."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for key, value in sd.items():
            *path, leaf = key.split(".")
            mod: torch.nn.Module = self
            for part in path:
                if not hasattr(mod, part):
                    mod.add_module(part, _Node())
                mod = getattr(mod, part)
            mod.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
        self.register_buffer("input_resolution", torch.tensor(64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_openai_torchscript_archive_loads_in_half_precision(tiny_cfg: str, model: Any, tmp_path: Path) -> None:
    sd = {k: v.half() for k, v in model.clip.state_dict().items()}
    path = tmp_path / "ViT-tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_Archive(sd)).save(str(path))
    m = build(tiny_cfg, random_init=False, weights=str(path))
    w = m.clip.visual.conv1.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, model.clip.visual.conv1.weight.half().float())


def test_position_embedding_resized_bicubic_antialias(tiny_cfg: str, model: Any, tmp_path: Path) -> None:
    path = _save_clip(model, tmp_path / "w64.pt")  # trained at 64 px: 4x4 grid
    m = build(tiny_cfg, random_init=False, weights=path, image_size=96)  # 6x6 grid
    old = model.clip.visual.positional_embedding.detach()
    grid = old[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(6, 6), mode="bicubic", antialias=True, align_corners=False)
    want = torch.cat([old[:1], want.permute(0, 2, 3, 1).reshape(36, -1)])
    torch.testing.assert_close(m.clip.visual.positional_embedding.detach(), want)


def _tiny_hf_clip(act: str) -> Any:
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=77, vocab_size=49408, hidden_act=act),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=2,
                           image_size=64, patch_size=16, hidden_act=act),
        projection_dim=32,
    )
    torch.manual_seed(5)
    return CLIPModel(cfg).eval()


@pytest.mark.parametrize(("hf_act", "activation"), [("gelu", "gelu"), ("quick_gelu", "quick_gelu")])
def test_hugging_face_folder_converts_to_open_clip(
    tiny_cfg: str, tmp_path: Path, hf_act: str, activation: str
) -> None:
    hf = _tiny_hf_clip(hf_act)
    hf.save_pretrained(str(tmp_path / "hf"))
    m = build(tiny_cfg, random_init=False, weights=str(tmp_path / "hf"), activation=activation)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    tokens = m._tokenizer(["a photo of a cracked pavement.", "a bad photo of a pavement."])
    with torch.no_grad():
        img_hf = hf.visual_projection(hf.vision_model(pixel_values=x).pooler_output)
        txt_hf = hf.text_projection(hf.text_model(input_ids=tokens).pooler_output)
        torch.testing.assert_close(m.clip.encode_image(x), img_hf, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(m.clip.encode_text(tokens), txt_hf, atol=1e-4, rtol=1e-4)
    # the Hugging Face weights file on its own is recognised by its key names
    single = build(tiny_cfg, random_init=False, weights=str(tmp_path / "hf" / "model.safetensors"),
                   activation=activation)
    assert torch.equal(single.clip.visual.proj, m.clip.visual.proj)


def test_folder_without_config_is_rejected(tiny_cfg: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Hugging Face CLIP model folder"):
        build(tiny_cfg, random_init=False, weights=str(tmp_path))


# -- activation switch --------------------------------------------------------------------------
def test_activation_switch_selects_gelu_or_quickgelu(tiny_cfg: str, model: Any, batch: torch.Tensor,
                                                      tmp_path: Path) -> None:
    from open_clip.transformer import QuickGELU

    def acts(m: Any) -> set[type]:
        return {type(mod) for mod in m.clip.modules() if isinstance(mod, (torch.nn.GELU, QuickGELU))}

    assert acts(model) == {torch.nn.GELU}
    path = _save_clip(model, tmp_path / "w.pt")
    quick = build(tiny_cfg, random_init=False, weights=path, activation="quick_gelu")
    assert acts(quick) == {QuickGELU}
    quick.load_checkpoint_state_dict(model.checkpoint_state_dict())
    assert not torch.allclose(quick(batch)["stage4"], model(batch)["stage4"])


# -- token cache ------------------------------------------------------------------------------------
def test_memory_token_cache_matches_uncached_path(tiny_cfg: str, model: Any, batch: torch.Tensor,
                                                  tmp_path: Path) -> None:
    m = build(tiny_cfg, random_init=False, weights=_save_clip(model, tmp_path / "w.pt"), token_cache="memory")
    m.load_checkpoint_state_dict(model.checkpoint_state_dict())
    keys = ["img-a", None]
    first = m.forward_train(batch, keys)
    assert len(m.token_cache) == 1 and m.token_cache.misses == 1
    second = m.forward_train(batch, keys)
    assert m.token_cache.hits == 1
    ref = model(batch)
    for k in first:
        torch.testing.assert_close(second[k], first[k], atol=0, rtol=0)  # every epoch identical
        torch.testing.assert_close(first[k][1], ref[k][1], atol=0, rtol=0)  # augmented: recomputed
        torch.testing.assert_close(first[k][0], ref[k][0], atol=0.05, rtol=0.01)  # fp16 tokens
    # gradients still reach the adapters from cached tokens
    second["stage1"].sum().backward()
    assert m.adapters[0].weight.grad is not None


def test_token_cache_off_is_plain_forward(model: Any, batch: torch.Tensor) -> None:
    assert model.token_cache is None
    torch.testing.assert_close(model.forward_train(batch, ["a", "b"])["out"], model(batch)["out"], atol=0, rtol=0)


def test_disk_token_cache_is_reused_across_models(tiny_cfg: str, model: Any, batch: torch.Tensor,
                                                  tmp_path: Path) -> None:
    weights = _save_clip(model, tmp_path / "w.pt")
    kw = dict(random_init=False, weights=weights, token_cache="disk", token_cache_dir=str(tmp_path / "cache"))
    a = build(tiny_cfg, **kw)
    out_a = a.forward_train(batch, ["x", "y"])
    files = list((tmp_path / "cache").rglob("*.pt"))
    assert len(files) == 2
    b = build(tiny_cfg, **kw)
    b.load_checkpoint_state_dict(a.checkpoint_state_dict())
    out_b = b.forward_train(batch, ["x", "y"])
    assert b.token_cache.hits == 2 and b.token_cache.misses == 0
    torch.testing.assert_close(out_b["out"], out_a["out"], atol=0, rtol=0)
    # another layer selection never reads these entries
    c = build(tiny_cfg, **kw, layers=[2, 4])
    c.forward_train(batch, ["x", None])
    assert c.token_cache.hits == 0


def test_token_cache_is_bounded(tiny_cfg: str, model: Any, batch: torch.Tensor,
                                capsys: pytest.CaptureFixture[str]) -> None:
    per_image = 4 * 16 * 64 * 2  # stages x patches x width x fp16 bytes
    m = build(tiny_cfg, token_cache="memory", token_cache_max_gb=1.5 * per_image / 2**30)
    m.forward_train(batch, ["a", "b"])
    assert len(m.token_cache) == 1 and m.token_cache.nbytes == per_image
    assert m.token_cache.full
    assert "token cache full" in capsys.readouterr().err


# -- zero-shot ---------------------------------------------------------------------------------------
def test_zeroshot_uses_the_models_projection(tiny_cfg: str, model: Any, batch: torch.Tensor, tmp_path: Path) -> None:
    z = build(tiny_cfg, "crackclip-zeroshot", random_init=False, weights=_save_clip(model, tmp_path / "w.pt"))
    assert z.checkpoint_state_dict() == {}
    assert not any(p.requires_grad for p in z.parameters())
    z.load_checkpoint_state_dict({})
    out = z(batch)
    for i, p in enumerate(reference_maps(z, batch, zeroshot=True)):
        torch.testing.assert_close(torch.sigmoid(out[f"stage{i + 1}"]), p, atol=2e-5, rtol=1e-4)


# -- prompts through the backbone ------------------------------------------------------------------------
def test_prompt_choice_changes_text_features(tiny_cfg: str, model: Any, tmp_path: Path) -> None:
    weights = _save_clip(model, tmp_path / "w.pt")
    generic = build(tiny_cfg, random_init=False, weights=weights, prompts="generic")
    assert len(generic._sentences["crack"]) == 175
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text("normal: ['intact {}']\ncrack: ['cracked {}']\n")
    own = build(tiny_cfg, random_init=False, weights=weights, prompts=str(yaml_path), prompt_object="wall")
    assert own._sentences["crack"][0] == "a bad photo of a cracked wall."
    t_crack, t_generic, t_own = model.prepare_text(), generic.prepare_text(), own.prepare_text()
    assert not torch.allclose(t_crack, t_generic)
    assert not torch.allclose(t_crack, t_own)


def test_train_prompts_are_used_in_training_mode_only(tiny_cfg: str, model: Any, batch: torch.Tensor,
                                                      tmp_path: Path) -> None:
    weights = _save_clip(model, tmp_path / "w.pt")
    m = build(tiny_cfg, random_init=False, weights=weights, train_prompts="generic")
    generic = build(tiny_cfg, random_init=False, weights=weights, prompts="generic")
    for other in (m, generic):
        other.load_checkpoint_state_dict(model.checkpoint_state_dict())
    torch.testing.assert_close(m.prepare_text(train=True), generic.prepare_text())
    torch.testing.assert_close(m.prepare_text(), model.prepare_text())
    m.train()
    with torch.no_grad():
        torch.testing.assert_close(m.forward_train(batch, None)["out"], generic(batch)["out"])
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(batch)["out"], model(batch)["out"])


# -- errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (dict(random_init=False), "random_init: true"),
        (dict(random_init=True, weights="/nonexistent/w.pt"), "only one of"),
        (dict(random_init=False, weights="/nonexistent/w.pt"), "no such file"),
        (dict(random_init=False, pretrained="no-such-tag"), "unknown open_clip pretrained tag"),
        (dict(layers=[0, 2]), "out of range"),
        (dict(layers=[4, 2]), "strictly increasing"),
        (dict(layers=[]), "empty"),
        (dict(image_size=8), "smaller than"),
        (dict(prompts="nope"), "unknown prompt set"),
        (dict(activation="relu"), "not one of"),
    ],
)
def test_bad_parameters_are_one_line_errors(tiny_cfg: str, params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CracksegError) as info:
        build(tiny_cfg, **params)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_model_name_suggests(tiny_cfg: str) -> None:
    with pytest.raises(ConfigError, match="did you mean 'ViT-L-14-336'"):
        crackseg.create_backbone("crackclip", model="ViT-L-14-33", random_init=True)


def test_weights_of_another_architecture(tiny_cfg: str, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(8, 3, 16, 16), "logit_scale": torch.zeros(())}, path)
    with pytest.raises(ConfigError, match="do not fit model") as info:
        build(tiny_cfg, random_init=False, weights=str(path))
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a TorchScript archive"):
        build(tiny_cfg, random_init=False, weights=str(junk))


def test_random_init_towers_are_reproducible(tiny_cfg: str, model: Any) -> None:
    torch.manual_seed(123)
    again = build(tiny_cfg)
    for k, v in model.clip.state_dict().items():  # frozen towers: always the same random draw
        assert torch.equal(again.clip.state_dict()[k], v), k
    assert again.weights_fingerprint == model.weights_fingerprint
    torch.manual_seed(123)
    third = build(tiny_cfg)  # adapters: from the caller's RNG
    assert torch.equal(third.adapters[0].weight, again.adapters[0].weight)
    assert not torch.equal(third.adapters[0].weight, model.adapters[0].weight)


def test_random_init_warns_loudly(tiny_cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(UserWarning, match="meaningless"):
        crackseg.create_backbone("crackclip", model=tiny_cfg, image_size=SIZE, layers=[1, 2, 3, 4], random_init=True)
    assert "RANDOM weights" in capsys.readouterr().err


# -- ViT-L-14-336 -----------------------------------------------------------------------------------------
def test_vit_l_14_336_adapter_count_from_config() -> None:
    import open_clip

    from crackseg_crackclip.model import trainable_parameter_count

    assert trainable_parameter_count(open_clip.get_model_config("ViT-L-14-336"), 4) == 3_148_800


@pytest.mark.slow
def test_vit_l_14_336_built_at_518() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = crackseg.create_backbone("crackclip", random_init=True, token_cache="off")
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 3_148_800
    assert m.grid == (37, 37) and m.fixed_input_size == 518
    assert m.clip.visual.positional_embedding.shape == (1370, 1024)
    assert [tuple(a.weight.shape) for a in m.adapters] == [(768, 1024)] * 4


def test_plugin_import_is_light() -> None:
    code = "import sys, crackseg_crackclip; print('torch' in sys.modules, 'open_clip' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["False", "False"], res.stderr
