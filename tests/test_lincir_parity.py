"""LINCIR.md §12: the official code's fixed-batch loss, reproduced with the same weights, batch and RNG order."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch

from cirbench.lincir.masking import Masker
from cirbench.lincir.objective import SpeedOptions, draw_randomness, lincir_loss
from cirbench.lincir.phi import Phi

CAPTIONS = [
    "A dog runs across the green grass in the park.",
    "actor attends the premiere of the film",
    "person and his wife pose for a photo at the event",
    "a beautiful sunset over the ocean with clouds",
    "illustration of a cartoon cat wearing a red hat",
    "running fast",
    "portrait of a young woman, digital art, highly detailed, 8k",
    "a $100 bill on a wooden table",
]
LOSS_EVAL = 0.6520707607269287
LOSS_TRAIN = 0.7089419364929199
GRAD_NORM = {"eval": 7.3980, "train": 5.7745}
FINGERPRINTS = {
    "token_embedding": "ece8f64fbcd3a931",
    "text_projection": "94c88259d9f10dd4",
    "phi.layers.0.weight": "12ee02ddc5714164",
    "original_tokens": "b82e96e8ef0fddc7",
    "replaced_tokens": "c6e80ed9cd1bf0b3",
}


def fingerprint(tensor: torch.Tensor) -> str:
    """sha256[:16] of the float32 bytes, as LINCIR.md §12 defines them."""
    return hashlib.sha256(tensor.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def pad(ids: list[int]) -> list[int]:
    return ids + [0] * (77 - len(ids))


@pytest.fixture(scope="module")
def fixture():
    import open_clip

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    masker = Masker("en_core_web_sm", mode="upstream")
    random.seed(0)
    items = masker(CAPTIONS, rng=random)
    original = torch.tensor([pad(i.tokens) for i in items])
    replaced = torch.tensor([pad(i.masked) for i in items])
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    torch.manual_seed(1)
    phi = Phi(512, 2048, 512, dropout=0.5)
    yield model, phi, original, replaced, items
    torch.set_num_threads(threads)


def test_rebuilt_state_matches_the_fingerprints(fixture):
    model, phi, original, replaced, items = fixture
    assert fingerprint(model.token_embedding.weight) == FINGERPRINTS["token_embedding"]
    assert fingerprint(model.text_projection) == FINGERPRINTS["text_projection"]
    assert fingerprint(phi.layers[0].weight) == FINGERPRINTS["phi.layers.0.weight"]
    assert fingerprint(original) == FINGERPRINTS["original_tokens"]
    assert fingerprint(replaced) == FINGERPRINTS["replaced_tokens"]
    assert [i.fallback for i in items].count("random-word") == 1  # "running fast"


@pytest.mark.parametrize("mode,expected", [("eval", LOSS_EVAL), ("train", LOSS_TRAIN)])
@pytest.mark.parametrize("speed", [SpeedOptions.plain(), SpeedOptions()], ids=["plain", "fast"])
def test_loss_matches_official(fixture, mode, expected, speed):
    model, phi, original, replaced, _ = fixture
    getattr(phi, mode)()
    phi.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    out = lincir_loss(model, phi, original, replaced, speed=speed)
    assert abs(out.loss.item() - expected) < 1e-6
    out.loss.backward()
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in phi.parameters())).item()
    assert abs(norm - GRAD_NORM[mode]) < 1e-3


@pytest.mark.parametrize("mode,expected", [("eval", LOSS_EVAL), ("train", LOSS_TRAIN)])
def test_trainer_randomness_path_matches_upstream_rng_order(fixture, mode, expected):
    """The trainer draws rand(B), randn(B, D), then two bernoulli masks from its generator; on CPU this is the
    same stream nn.Dropout and torch.rand/randn consume after ``manual_seed``, so the loss is identical."""
    model, phi, original, replaced, _ = fixture
    getattr(phi, mode)()
    torch.manual_seed(123)
    global_path = lincir_loss(model, phi, original, replaced, speed=SpeedOptions.plain()).loss.item()
    generator = torch.Generator().manual_seed(123)
    randomness = draw_randomness(8, 512, phi, generator)
    assert (randomness.masks is None) == (mode == "eval")
    explicit = lincir_loss(model, phi, original, replaced, randomness=randomness, speed=SpeedOptions.plain())
    assert explicit.loss.item() == global_path
    assert abs(explicit.loss.item() - expected) < 1e-6
