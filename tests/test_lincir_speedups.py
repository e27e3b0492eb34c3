"""The exact speedups give the plain path's outputs, losses and gradients (up to float rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lincir_support import pad, tiny_config

from cirbench.lincir import tokenizer as tk
from cirbench.lincir.objective import SpeedOptions, draw_randomness, encode, lincir_loss
from cirbench.lincir.phi import Phi
from cirbench.lincir.targets import TargetCache

CAPTIONS = [
    "a dog",
    "a very long prompt about a castle on a cliff, dramatic lighting, trending on artstation, octane render",
    "two cats and a dog sleeping on the couch",
    "sunset",
    "portrait of a young woman, digital art, highly detailed, 8k",
    "a red car parked near the old blue house in the rain",
]
MASKED = [
    "[$]",
    "[$] on [$] , [$] , trending on [$] , [$]",
    "[$] and [$] sleeping on [$]",
    "[$]",
    "[$] of [$] , [$] , highly [$] , [$]",
    "[$] parked near [$] in [$]",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # small ops on a shared 2-core machine


@pytest.fixture(scope="module")
def batch():
    from cirbench.backbones import load_backbone

    backbone = load_backbone("cirbench-tiny:random")
    tokens = pad([tk.tokenize(c) for c in CAPTIONS])
    masked = pad([tk.tokenize(m) for m in MASKED])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        phi = Phi.for_backbone(backbone.embed_dim, backbone.token_dim)
    return backbone.model, phi, tokens, masked


SPEEDS = {
    "truncate": SpeedOptions(truncate=True, buckets=1, causal_sdpa=False),
    "buckets": SpeedOptions(truncate=True, buckets=3, causal_sdpa=False),
    "causal_sdpa": SpeedOptions(truncate=False, buckets=1, causal_sdpa=True),
    "all": SpeedOptions(truncate=True, buckets=4, causal_sdpa=True),
    "pack": SpeedOptions(truncate=False, buckets=1, causal_sdpa=False, pack=True),
    "pack-all": SpeedOptions(truncate=True, buckets=4, causal_sdpa=True, pack=True),
}


def loss_and_grads(model, phi, tokens, masked, speed, target=None):
    phi.zero_grad(set_to_none=True)
    phi.train()
    randomness = draw_randomness(len(tokens), phi.dims[0], phi, torch.Generator().manual_seed(7))
    out = lincir_loss(model, phi, tokens, masked, target=target, randomness=randomness, speed=speed)
    out.loss.backward()
    return out, [p.grad.clone() for p in phi.parameters()]


@pytest.mark.parametrize("name", list(SPEEDS))
def test_encode_is_unchanged(batch, name):
    from cirbench.lincir.objective import causal_attention

    model, phi, tokens, masked = batch
    generator = torch.Generator().manual_seed(11)  # not the global RNG: the draw must not depend on test order
    pseudo = torch.randn(len(tokens), model.token_embedding.weight.shape[1], generator=generator)
    speed = SPEEDS[name]
    with torch.no_grad():
        plain = encode(model, masked, pseudo, SpeedOptions.plain())
        with causal_attention(model, speed.causal_sdpa):
            fast = encode(model, masked, pseudo, speed)
            fast_clean = encode(model, tokens, None, speed)
        plain_clean = encode(model, tokens, None, SpeedOptions.plain())
    # Float rounding only: features are O(1), and reordered fp32 sums differ by up to ~2e-6 on some draws.
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_clean, plain_clean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(SPEEDS))
def test_loss_and_gradients_are_unchanged(batch, name):
    model, phi, tokens, masked = batch
    plain, plain_grads = loss_and_grads(model, phi, tokens, masked, SpeedOptions.plain())
    fast, fast_grads = loss_and_grads(model, phi, tokens, masked, SPEEDS[name])
    assert abs(fast.loss.item() - plain.loss.item()) <= 1e-6 * max(1.0, abs(plain.loss.item()))
    for a, b in zip(fast_grads, plain_grads, strict=True):  # float rounding only: tiny relative to the gradient's norm
        assert (a - b).norm() <= 1e-5 * b.norm()
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_cached_target_gives_the_same_loss_and_gradients(batch):
    model, phi, tokens, masked = batch
    speed = SPEEDS["all"]
    fresh, fresh_grads = loss_and_grads(model, phi, tokens, masked, speed)
    cached, cached_grads = loss_and_grads(model, phi, tokens, masked, speed, target=fresh.target.clone())
    assert cached.loss.item() == fresh.loss.item()
    for a, b in zip(cached_grads, fresh_grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_target_cache_is_lossless_and_computes_each_row_once(tmp_path, dtype):
    cache = TargetCache(tmp_path / str(dtype), n=10, dim=4, dtype=dtype, key="k", create=True)
    values = torch.randn(10, 4).to(dtype)
    calls: list[list[int]] = []

    def compute(positions: np.ndarray) -> torch.Tensor:
        calls.append(positions.tolist())
        return values[torch.from_numpy(indices[positions])]

    indices = np.array([3, 1, 7])
    first = cache.get(indices, compute, torch.device("cpu"))
    indices = np.array([1, 2, 3])
    second = cache.get(indices, compute, torch.device("cpu"))
    assert calls == [[0, 1, 2], [1]]  # only row 2 was new the second time
    assert torch.equal(first, values[[3, 1, 7]].float())
    assert torch.equal(second, values[[1, 2, 3]].float())
    reopened = TargetCache(tmp_path / str(dtype), n=10, dim=4, dtype=dtype, key="k")
    assert reopened.hit_rate == pytest.approx(0.4)


def test_half_precision_tower_keeps_phi_and_loss_fp32():
    from cirbench.backbones import load_backbone

    backbone = load_backbone("cirbench-tiny:random", precision="bf16")
    assert backbone.model.transformer.get_cast_dtype() == torch.bfloat16
    tokens = pad([tk.tokenize(c) for c in CAPTIONS[:3]])
    masked = pad([tk.tokenize(m) for m in MASKED[:3]])
    phi = Phi.for_backbone(backbone.embed_dim, backbone.token_dim)
    out = lincir_loss(backbone.model, phi, tokens, masked)
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in phi.parameters())


def test_training_with_and_without_target_cache_agrees(tmp_path, monkeypatch):
    """Two epochs: the second reads every target from the cache; weights match the recomputing run."""
    from safetensors.torch import load_file

    from cirbench.lincir.trainer import train

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"{c} number {i}" for i, c in enumerate(CAPTIONS * 2)) + "\n")
    runs = {}
    for cached in (True, False):
        cfg = tiny_config(
            corpus, tmp_path / f"r{cached}", steps=6, global_batch=4, log_every=10, target_cache=cached, buckets=2
        )
        result = train(cfg)
        runs[cached] = load_file(str(result.out / "phi_last.safetensors"))
    assert (tmp_path / "rTrue" / "target_cache" / "filled.bin").is_file()
    for key, value in runs[True].items():
        torch.testing.assert_close(value, runs[False][key], rtol=0, atol=1e-6)


def test_packing_is_used_only_where_the_tower_allows_it(batch):
    """A tower without the causal mask (or with custom blocks) is encoded by the padded path, not packed."""
    import copy

    from cirbench.lincir.packed import encode_packed, supports_packing

    model, _phi, tokens, masked = batch
    assert supports_packing(model)
    with torch.no_grad():  # the last block finishes on the EOT rows only: still the same features
        generator = torch.Generator().manual_seed(5)
        pseudo = torch.randn(len(tokens), model.token_embedding.weight.shape[1], generator=generator)
        torch.testing.assert_close(
            encode_packed(model, masked, pseudo), encode(model, masked, pseudo, SpeedOptions.plain())
        )
    bidirectional = copy.deepcopy(model)  # a shallow copy would share (and clear) the fixture's buffers
    bidirectional.attn_mask = None
    assert not supports_packing(bidirectional)
    custom = copy.deepcopy(model)
    custom.transformer.resblocks[0] = torch.nn.Identity()
    assert not supports_packing(custom)


@pytest.mark.parametrize("change", ["zero-attn", "attn-dropout", "not-causal", "eos-pooling", "transformer-subclass"])
def test_packing_refuses_towers_it_cannot_reproduce(batch, change):
    """Each of these changes what the tower computes in a way the packed path would not follow."""
    import copy

    from open_clip.transformer import Transformer

    from cirbench.lincir.packed import supports_packing

    model = copy.deepcopy(batch[0])
    attn = model.transformer.resblocks[0].attn
    if change == "zero-attn":
        attn.add_zero_attn = True
    elif change == "attn-dropout":
        attn.dropout = 0.1
        attn.train()
    elif change == "not-causal":
        model.attn_mask = torch.zeros_like(model.attn_mask)
    elif change == "eos-pooling":  # open_clip's *-worldwide towers: EOS id 1, not the largest id
        model.text_pool_type, model.text_eos_id = "eos", 1
    else:
        model.transformer.__class__ = type("Custom", (Transformer,), {})
    assert not supports_packing(model)


def test_eos_pooling_is_argmax_pooling_only_when_eos_is_the_largest_id(batch):
    """cirbench pools at the argmax (CLIP's EOT); any other pooling is a clear error, never silently wrong features."""
    import copy

    from cirbench.errors import BackboneError
    from cirbench.text_encoding import encode_tokens, pools_at_argmax

    model, _phi, tokens, _masked = batch
    same = copy.copy(model)
    same.text_pool_type, same.text_eos_id = "eos", model.token_embedding.num_embeddings - 1
    assert pools_at_argmax(same)
    other = copy.copy(model)
    other.text_pool_type, other.text_eos_id = "eos", 1
    with pytest.raises(BackboneError, match="pools with 'eos'"):
        encode_tokens(other, tokens)
