"""Backbone ids, the download boundary, the QuickGELU guard and text encoding with pseudo tokens."""

from __future__ import annotations

import open_clip
import pytest
import torch

from cirbench import backbones
from cirbench.backbones import BackboneError, backbone_identity, load_backbone, parse_backbone_id
from cirbench.text_encoding import encode_tokens, tokenize_with_placeholder


def test_parse_ids_and_aliases(tmp_path):
    assert parse_backbone_id("ViT-L-14:openai").tag == "openai"
    assert parse_backbone_id("ViT-L/14").id == "ViT-L-14:openai"
    assert parse_backbone_id("giga").id == "ViT-bigG-14:laion2b_s39b_b160k"
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    spec = parse_backbone_id(f"ViT-B-32:{ckpt}")
    assert spec.checkpoint == ckpt and spec.tag is None
    with pytest.raises(BackboneError, match="no tag"):
        parse_backbone_id("ViT-L-14")


def test_placeholder_tokenization_keeps_259_where_string_substitution_loses_it():
    # "$." is one BPE token (34682) when '$' is substituted into the string (LINCIR.md §3).
    assert open_clip.tokenize(["$."])[0, 1].item() == 34682
    ids = tokenize_with_placeholder(["a photo of $. that"])[0]
    assert ids[:8].tolist() == [49406, 320, 1125, 539, 259, 269, 682, 49407]
    plain = "a photo of $ that is red"
    assert torch.equal(tokenize_with_placeholder([plain]), open_clip.tokenize([plain]))
    star = tokenize_with_placeholder(["a photo of * , a dog"], placeholder="*", placeholder_id=265)[0]
    assert star[1:8].tolist() == [320, 1125, 539, 265, 267, 320, 1929]


def test_placeholder_truncation_keeps_eot_last():
    ids = tokenize_with_placeholder(["word " * 100 + "$"], context_length=16)[0]
    assert ids.shape[0] == 16 and ids[-1].item() == 49407 and ids[0].item() == 49406


def test_encode_tokens_matches_open_clip_and_truncation_is_exact(tiny_backbone):
    model = tiny_backbone.model
    tokens = tiny_backbone.tokenize(["a dog", "a small cat sitting on a red mat in the sun"])
    reference = model.encode_text(tokens)
    assert torch.equal(encode_tokens(model, tokens), reference)
    torch.testing.assert_close(encode_tokens(model, tokens, truncate=True), reference, atol=1e-5, rtol=1e-5)


def test_pseudo_tokens_replace_every_placeholder_of_their_row(tiny_backbone):
    model = tiny_backbone.model
    tokens = tokenize_with_placeholder(["$ on $ grass", "a photo of $ that is red"])
    pseudo = torch.randn(2, tiny_backbone.token_dim, generator=torch.Generator().manual_seed(0))
    got = encode_tokens(model, tokens, pseudo)
    # Hand-built reference: overwrite the embeddings, then run the tower exactly as CLIP.encode_text.
    x = model.token_embedding(tokens).clone()
    for row in range(2):
        x[row, tokens[row] == 259] = pseudo[row]
    x = model.ln_final(model.transformer(x + model.positional_embedding, attn_mask=model.attn_mask))
    expected = x[torch.arange(2), tokens.argmax(-1)] @ model.text_projection
    torch.testing.assert_close(got, expected)
    one = encode_tokens(model, tokens[1:], pseudo[1:])
    torch.testing.assert_close(got[1:], one, atol=1e-5, rtol=1e-5)  # batch of 2 vs 1: float summation order


def test_random_init_is_deterministic():
    a = load_backbone("cirbench-tiny:random")
    b = load_backbone("cirbench-tiny:random")
    assert torch.equal(a.model.token_embedding.weight, b.model.token_embedding.weight)
    assert a.embed_dim == 32 and a.token_dim == 64 and a.image_size == 32


def test_pretrained_weights_are_not_downloaded_unless_asked(monkeypatch):
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        raise FileNotFoundError("not in cache")

    monkeypatch.setattr(backbones, "_hf_hub_download", fake_download)
    monkeypatch.delenv("CIRBENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(BackboneError, match="not in the local cache.*--allow-download"):
        load_backbone("ViT-L-14:openai")
    assert calls and all(call["local_files_only"] for call in calls)
    cfg = open_clip.get_pretrained_cfg("ViT-L-14", "openai")
    assert calls[0]["repo_id"] == cfg["hf_hub"].rstrip("/").rsplit("/", 1)[0] or calls[0]["repo_id"] in cfg["hf_hub"]
    calls.clear()
    with pytest.raises(BackboneError):
        load_backbone("ViT-H-14:laion2b_s32b_b79k", allow_download=True)
    assert calls and not any(call["local_files_only"] for call in calls)


def test_openai_tag_resolves_quickgelu_and_guard_fires_for_bare_checkpoints(tmp_path, monkeypatch):
    assert open_clip.get_pretrained_cfg("ViT-B-32", "openai")["quick_gelu"] is True
    captured = {}

    def fake_create(name, pretrained=None, force_quick_gelu=False, **kwargs):
        captured.update(name=name, pretrained=pretrained, quick_gelu=force_quick_gelu)
        raise RuntimeError("stop at the model factory")

    monkeypatch.setattr(backbones, "resolve_pretrained_file", lambda *a, **k: "/cache/weights.bin")
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    with pytest.raises(RuntimeError, match="stop at the model factory"):
        load_backbone("ViT-B-32:openai")
    assert captured == {"name": "ViT-B-32", "pretrained": "/cache/weights.bin", "quick_gelu": True}
    with pytest.raises(BackboneError, match="quick_gelu"):
        load_backbone("ViT-B-32:openai", quick_gelu=False)

    ckpt = tmp_path / "finetuned.pt"
    ckpt.write_bytes(b"weights")
    with pytest.raises(BackboneError, match="QuickGELU"):
        load_backbone(f"ViT-B-32:{ckpt}")
    with pytest.raises(RuntimeError, match="stop at the model factory"):
        load_backbone(f"ViT-B-32-quickgelu:{ckpt}")
    assert captured["quick_gelu"] is True
    with pytest.raises(RuntimeError, match="stop at the model factory"):
        load_backbone(f"ViT-B-32:{ckpt}", quick_gelu=False)
    assert captured["quick_gelu"] is False


def test_unknown_architecture_and_missing_checkpoint():
    with pytest.raises(BackboneError, match="unknown open_clip architecture"):
        load_backbone("ViT-Q-99:openai")
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone("ViT-B-32:/nonexistent/file.pt")


def test_weights_identity_is_known_without_loading(tmp_path, monkeypatch):
    """Run keys need the weights' identity before any model is loaded (reusing a result loads nothing)."""
    expected = {i: load_backbone(i).weights_id for i in ("cirbench-tiny:random", "shapes-clip:v1")}

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", refuse)
    monkeypatch.setattr(open_clip, "create_model", refuse)
    for backbone_id, weights_id in expected.items():
        assert backbone_identity(backbone_id).weights_id == weights_id
    openai = backbone_identity("ViT-L/14")
    assert openai.id == "ViT-L-14:openai" and openai.quick_gelu
    assert openai.weights_id == "open_clip:ViT-L-14:openai|quick_gelu=True|fp32"
    ckpt = tmp_path / "finetuned.pt"
    ckpt.write_bytes(b"weights")
    local = backbone_identity(f"ViT-B-32:{ckpt}", quick_gelu=False)
    assert local.weights_id.startswith("sha256:") and not local.quick_gelu
    with pytest.raises(BackboneError, match="QuickGELU"):
        backbone_identity(f"ViT-B-32:{ckpt}")
