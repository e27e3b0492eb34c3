"""phi checkpoints (official ``.pt`` and cirbench safetensors) and the ``lincir`` evaluation method."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Query
from cirbench.errors import MethodError, OptionError
from cirbench.phi import (
    Phi,
    PhiCheckpointError,
    load_official,
    load_phi,
    load_safetensors,
    phi_weights_id,
    save_official,
    save_safetensors,
)


def encode(method, queries, refs, benchmark):
    bench = get_benchmark(benchmark)
    return method.encode_queries(queries, [bench.query_texts(q, method.caption_join) for q in queries], refs)


class OfficialPhi(nn.Module):
    """``navervision/lincir:models.Phi`` as released (the layout its checkpoints carry)."""

    def __init__(self, input_dim, hidden_dim, output_dim, dropout):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, x):
        return self.layers(x)


@pytest.fixture(scope="module")
def tiny():
    from cirbench.backbones import load_backbone

    return load_backbone("cirbench-tiny:random")


def test_official_checkpoint_loads_with_weights_only(tmp_path, tiny):
    official = OfficialPhi(tiny.embed_dim, 4 * tiny.embed_dim, tiny.token_dim, 0.5)
    path = tmp_path / "phi_best.pt"
    torch.save({"epoch": 1000, "Phi": official.state_dict()}, path)  # what train_phi.py:save_phi writes
    assert set(torch.load(path, weights_only=True)) == {"epoch", "Phi"}
    phi, meta = load_phi(path, tiny.embed_dim, tiny.token_dim)
    assert meta["format"] == "official" and not phi.training
    x = torch.randn(3, tiny.embed_dim)
    assert torch.equal(phi(x), official.eval()(x))
    assert list(phi.state_dict()) == [f"layers.{i}.{k}" for i in (0, 3, 6) for k in ("weight", "bias")]


def test_official_round_trip_and_ddp_prefix(tmp_path):
    phi = Phi(8, 32, 16)
    path = save_official(phi, tmp_path / "out.pt", step=7)
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 7 and set(raw["Phi"]) == set(phi.state_dict())
    again, _ = load_phi(path)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), phi.state_dict().values(), strict=True))
    torch.save({"Phi": {f"module.{k}": v for k, v in phi.state_dict().items()}}, tmp_path / "ddp.pt")
    assert load_phi(tmp_path / "ddp.pt")[0].dims == (8, 32, 16)


def test_safetensors_metadata(tmp_path):
    phi = Phi(8, 32, 16, dropout=0.25)
    path = save_safetensors(phi, tmp_path / "phi.safetensors", "cirbench-tiny:random", 42, {"lr": 1e-4})
    state, meta = load_safetensors(path)
    assert meta["format"].startswith("cirbench-lincir-phi")
    assert meta["backbone"] == "cirbench-tiny:random" and meta["step"] == "42"
    assert json.loads(meta["recipe"]) == {"lr": 1e-4}
    assert (meta["input_dim"], meta["hidden_dim"], meta["output_dim"], meta["dropout"]) == ("8", "32", "16", "0.25")
    loaded, _ = load_phi(path)
    assert loaded.dropout == 0.25 and torch.equal(loaded.layers[0].weight, phi.layers[0].weight)
    with pytest.raises(PhiCheckpointError, match="trained on backbone cirbench-tiny:random, not ViT-B-32:openai"):
        load_phi(path, backbone="ViT-B-32:openai")


def test_wrong_shapes_name_both_dims(tmp_path, tiny):
    path = save_official(Phi(768, 3072, 768), tmp_path / "lincir_large.pt")
    with pytest.raises(PhiCheckpointError) as error:
        load_phi(path, tiny.embed_dim, tiny.token_dim, backbone=tiny.id)
    message = str(error.value)
    assert "D=768" in message and "W=768" in message
    assert f"D={tiny.embed_dim}" in message and f"W={tiny.token_dim}" in message
    assert isinstance(error.value, MethodError)  # the CLI prints it as one line


def test_unreadable_and_foreign_checkpoints_fail_clearly(tmp_path):
    torch.save({"state_dict": {"x": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(PhiCheckpointError, match="no 'Phi' entry"):
        load_official(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PhiCheckpointError, match="cannot read"):
        load_official(tmp_path / "junk.pt")
    with pytest.raises(PhiCheckpointError, match="does not exist"):
        load_phi(tmp_path / "missing.safetensors")
    torch.save({"Phi": {"layers.0.weight": torch.zeros(4, 2)}}, tmp_path / "partial.pt")
    with pytest.raises(PhiCheckpointError, match="missing 'layers.6.weight'"):
        load_phi(tmp_path / "partial.pt")


# --- the lincir method -------------------------------------------------------------------------------------------
def _run_dir(tmp_path, tiny, best: bool):
    run = tmp_path / "run"
    last = Phi.for_backbone(tiny.embed_dim, tiny.token_dim)
    save_safetensors(last, run / "phi_last.safetensors", tiny.id, 20)
    if best:
        save_safetensors(Phi.for_backbone(tiny.embed_dim, tiny.token_dim), run / "phi_best.safetensors", tiny.id, 10)
    (run / "train_meta.json").write_text(
        json.dumps({"wall_time_s": 12.5, "device_type": "cpu", "device_count": 1, "corpora": [{"spec": "caps.txt"}]})
    )
    return run


def test_method_prefers_best_and_carries_train_meta(tmp_path, tiny):
    from cirbench.methods import build_method

    run = _run_dir(tmp_path, tiny, best=True)
    method = build_method("lincir", tiny, run, {})
    assert method.info.checkpoint.endswith("phi_best.safetensors")
    assert method.info.train_meta["wall_time_s"] == 12.5
    assert "caps.txt" in method.info.training_data
    # The weights' identity is the tensors' hash, readable without building the method, and blind to metadata.
    assert method.info.checkpoint_id == phi_weights_id(run / "phi_best.safetensors")
    copy = tmp_path / "copy.safetensors"
    save_safetensors(method.phi, copy, tiny.id, 99, {"corpora": ["elsewhere.txt"]})
    assert phi_weights_id(copy) == method.info.checkpoint_id
    assert method.describe()["prompt"] == "a photo of $ that {caption}"
    run_last = _run_dir(tmp_path / "b", tiny, best=False)
    assert build_method("lincir", tiny, run_last, {}).info.checkpoint.endswith("phi_last.safetensors")
    with pytest.raises(OptionError, match=r"method lincir: unknown option\(s\) promt; known: .*prompt"):
        build_method("lincir", tiny, run, {"promt": "x"})
    with pytest.raises(OptionError, match="prompt='a photo' is not valid.*'\\$' slot"):
        build_method("lincir", tiny, run, {"prompt": "a photo"})
    with pytest.raises(OptionError, match="whose only field is {caption}"):
        build_method("lincir", tiny, run, {"prompt": "a photo of $ that {caption} {x}"})
    with pytest.raises(MethodError, match="run directory .* holds no phi_best"):
        build_method("lincir", tiny, tmp_path, {})


def test_method_queries_follow_upstream(tmp_path, tiny):
    from cirbench.methods import build_method
    from cirbench.text_encoding import encode_tokens

    method = build_method("lincir", tiny, _run_dir(tmp_path, tiny, best=False), {})
    refs = torch.randn(2, tiny.image_embed_dim) * 5
    queries = [Query("q0", "r0", ("is red",)), Query("q1", "r1", ("is blue",))]
    out = encode(method, queries, refs, "cirr")
    assert out.shape == (2, tiny.embed_dim) and torch.allclose(out.norm(dim=-1), torch.ones(2))
    # phi sees the raw (unnormalised) image embedding; the prompt's "$" is token 259.
    tokens = tiny.tokenize(["a photo of $ that is red"])
    assert (tokens == 259).sum() == 1
    expected = encode_tokens(tiny.model, tokens, method.phi(refs[:1]), 259)
    torch.testing.assert_close(out[0], torch.nn.functional.normalize(expected.float(), dim=-1)[0])
    assert not torch.allclose(encode(method, queries, refs / 5, "cirr"), out)
    # FashionIQ: both caption orders, stripped of ".?, ", normalised then averaged.
    fiq = Query("f", "r", ("is darker.", "has longer sleeves?"))
    prompts = method.prompts(get_benchmark("fashioniq").query_texts(fiq, method.caption_join))
    assert prompts == [
        "a photo of $ that is darker and has longer sleeves",
        "a photo of $ that has longer sleeves and is darker",
    ]
    pair = torch.nn.functional.normalize(method.encode_prompts(prompts, refs[:1].repeat(2, 1)), dim=-1)
    manual = torch.nn.functional.normalize(pair.sum(0, keepdim=True), dim=-1)
    torch.testing.assert_close(encode(method, [fiq], refs[:1], "fashioniq"), manual)


def test_infer_backbone(tmp_path, tiny):
    from cirbench.methods.lincir import infer_backbone

    assert infer_backbone(save_official(Phi(768, 3072, 768), tmp_path / "lincir_large.pt")) == "ViT-L-14:openai"
    assert infer_backbone(save_official(Phi(1280, 5120, 1280), tmp_path / "g.pt")).startswith("ViT-bigG-14")
    assert infer_backbone(_run_dir(tmp_path, tiny, best=False)) == tiny.id
