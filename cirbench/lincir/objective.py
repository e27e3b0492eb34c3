"""The LinCIR loss exactly as upstream ``train_phi.py:227-241`` (LINCIR.md §6-7), plus exact speedups.

Per step: ``c = E_T(t)`` (unnormalised projected text embedding of the clean caption, frozen tower);
``x = c + u * n`` with ``u ~ U[0,1)`` per sample and ``n ~ N(0, I)``; ``p = phi(x)``; ``c_hat = E_T(masked t with
p at every id 259)``; ``loss = mse(c_hat.float(), c.float())`` averaged over batch x dims. RNG order: ``rand(B)``,
``randn(B, D)``, then phi's two dropout masks.

Speedups, each exact (tests prove equality with the plain path):

- ``truncate``: the text tower is causal and pools at EOT, so positions after a row's EOT never influence its output;
  a batch is cut to its longest sequence up to EOT;
- ``buckets``: the batch is sorted by length and encoded in that many chunks, each cut to its own longest row (the
  loss is still one mean over the whole batch, and phi/RNG see the whole batch in its original order);
- ``causal_sdpa``: the attention mask open_clip passes is exactly causal; telling SDPA ``is_causal=True`` lets it use
  flash/efficient kernels instead of an additive mask;
- ``pack``: every per-token operation runs on the real tokens only and attention on a zero-padded causal buffer
  (``packed.py``); the tower's FLOPs follow the captions' true lengths instead of the longest row's;
- ``attention``: on packed tokens, a variable-length attention kernel instead of the padded buffer (``varlen.py``);
- ``graphs``: the packed tower captured as CUDA graphs over bucketed shapes (``packplan.py``: padding that no real
  row attends to);
- target caching (``target=``): the clean embedding of a caption never changes (frozen tower), so it may be passed in
  from a cache instead of recomputed.

Half-precision towers are the caller's choice (``load_backbone(precision=...)``); phi, the noise and the loss stay fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cirbench.lincir.packed import encode_packed, supports_packing
from cirbench.lincir.packplan import PackPlan
from cirbench.phi import Phi
from cirbench.text_encoding import encode_tokens, eot_positions

PLACEHOLDER_ID = 259


@dataclass(frozen=True)
class SpeedOptions:
    """Exact speedups; all off reproduces upstream's computation literally (77 positions, additive mask)."""

    truncate: bool = True
    buckets: int = 1
    causal_sdpa: bool = True
    pack: bool = False  # run the tower on real tokens only (``packed.py``); supersedes truncate and buckets
    compile: bool = False  # torch.compile the packed tower (the unpacked path compiles ``model.transformer``)
    attention: str = "padded"  # the packed tower's attention kernel (``varlen.KERNELS``: padded, reference, flash)
    graphs: bool = False  # CUDA graphs of the packed tower, one per bucketed shape (needs bucketed plans)

    @classmethod
    def plain(cls) -> SpeedOptions:
        return cls(truncate=False, buckets=1, causal_sdpa=False, pack=False)


@dataclass
class Randomness:
    """Everything random in one step, in upstream draw order: ``u`` (B,), ``n`` (B, D), dropout masks (B, 4D) x 2."""

    u: torch.Tensor
    n: torch.Tensor
    masks: tuple[torch.Tensor, torch.Tensor] | None = None

    def rows(self, index: slice | torch.Tensor) -> Randomness:
        masks = None if self.masks is None else (self.masks[0][index], self.masks[1][index])
        return Randomness(self.u[index], self.n[index], masks)


def draw_randomness(
    batch: int,
    embed_dim: int,
    phi: Phi | None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Randomness:
    """Draw one step's noise and (when phi trains) dropout masks in upstream order from ``generator``.

    On CPU the masks equal what ``nn.Dropout`` would draw from the same generator state (bernoulli, then scaled by
    ``1/(1-p)``), so this path reproduces upstream bit for bit while letting the trainer draw for a whole global
    batch and hand each device its rows.
    """
    u = torch.rand(batch, device=device, generator=generator)
    n = torch.randn(batch, embed_dim, device=device, generator=generator)
    masks = None
    if phi is not None and phi.training and phi.dropout > 0:
        keep = 1.0 - phi.dropout
        hidden = phi.dims[1]
        masks = tuple(
            torch.empty(batch, hidden, device=device).bernoulli_(keep, generator=generator).div_(keep) for _ in range(2)
        )
    return Randomness(u, n, masks)  # type: ignore[arg-type]


@contextlib.contextmanager
def causal_attention(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, the text tower's attention tells SDPA ``is_causal=True`` (its mask is exactly causal)."""
    if not enabled:
        yield
        return

    def hint(_module, args, kwargs):
        if kwargs.get("attn_mask") is not None:
            kwargs["is_causal"] = True
        return args, kwargs

    handles = [
        block.attn.register_forward_pre_hook(hint, with_kwargs=True)
        for block in getattr(model.transformer, "resblocks", [])
        if isinstance(getattr(block, "attn", None), torch.nn.MultiheadAttention)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def encode(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    pseudo_tokens: torch.Tensor | None = None,
    speed: SpeedOptions = SpeedOptions(),
    plan: PackPlan | None = None,
) -> torch.Tensor:
    """Unnormalised projected text features, encoded per ``speed`` (same values as one plain 77-token pass).

    ``plan``: the packing plan of ``tokens``, built on the host beforehand (no device read-back); packed path only."""
    if speed.pack and supports_packing(model):
        return encode_packed(
            model,
            tokens,
            pseudo_tokens,
            PLACEHOLDER_ID,
            compiled=speed.compile,
            plan=plan,
            attention=speed.attention,
            graphs=speed.graphs,
        )
    if speed.buckets <= 1 or tokens.shape[0] <= 1:
        return encode_tokens(model, tokens, pseudo_tokens, PLACEHOLDER_ID, truncate=speed.truncate)
    order = torch.argsort(eot_positions(tokens), stable=True)
    pieces = []
    for chunk in torch.tensor_split(order, min(speed.buckets, tokens.shape[0])):
        pseudo = None if pseudo_tokens is None else pseudo_tokens[chunk]
        pieces.append(encode_tokens(model, tokens[chunk], pseudo, PLACEHOLDER_ID, truncate=True))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(pieces)[inverse]


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, fp32, differentiable w.r.t. phi
    target: torch.Tensor  # (B, D) fp32 clean embeddings (what a target cache stores)


def lincir_loss(
    model: torch.nn.Module,
    phi: torch.nn.Module,
    tokens: torch.Tensor,
    masked_tokens: torch.Tensor,
    target: torch.Tensor | None = None,
    randomness: Randomness | None = None,
    speed: SpeedOptions = SpeedOptions(),
    noise_scale: float = 1.0,
    l2_normalize: bool = False,
    plans: tuple[PackPlan | None, PackPlan | None] = (None, None),
) -> StepOutput:
    """Upstream's loss block. ``randomness=None`` draws from torch's global RNG in upstream order and lets phi's
    own ``nn.Dropout`` draw its masks (the literal upstream path); otherwise the given draws are used. ``plans``:
    the packing plans of ``tokens`` and ``masked_tokens`` when built on the host beforehand."""
    with causal_attention(model, speed.causal_sdpa):
        if target is None:
            with torch.no_grad():
                target = encode(model, tokens, None, speed, plans[0])
        target = target.float()
        batch, dim = target.shape
        if randomness is None:
            u = torch.rand(batch, device=target.device)
            n = torch.randn(target.shape, device=target.device)
            masks = None
        else:
            u, n, masks = randomness.u, randomness.n, randomness.masks
        features = target + noise_scale * u.unsqueeze(-1) * n
        if l2_normalize:
            features = F.normalize(features, dim=-1)
        pseudo = phi(features) if masks is None else phi(features, masks)
        predicted = encode(model, masked_tokens, pseudo, speed, plans[1])
    loss = F.mse_loss(predicted.float(), target, reduction="mean")
    return StepOutput(loss=loss, target=target)
