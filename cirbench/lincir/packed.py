"""Packed text encoding: the CLIP text tower run on real tokens only (an exact speedup for LinCIR training).

Captions in a batch are short and of very different lengths (CC3M captions ~15 BPE tokens, prompts up to 75), so a
padded (B, 77) batch spends most of its work on positions after EOT. The tower is causal and pools at EOT, so those
positions never influence a row's output. Here every per-token operation (layer norms, the QKV and output projections,
the MLP) runs on the packed (T, W) matrix of real tokens (where they go: ``packplan.py``); by default attention
scatters into a zero-padded (B, L, 3W) buffer, where causal SDPA is exact because padding follows EOT and causal rows
never look ahead, and a variable-length kernel (``varlen.py``) can run it on the packed tokens instead. The last
block needs only its EOT rows after attention, so its output projection and MLP run on B rows.

Same values as one plain padded pass (float rounding aside); gradients flow into the pseudo tokens.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.lincir.packplan import TOKENS_PER_ROW, PackPlan, plan_pack
from cirbench.lincir.varlen import VARLEN
from cirbench.text_encoding import pools_at_argmax, project_text

_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (its training flag, verdict)


def supports_packing(model: Any) -> bool:
    """True only for open_clip's standard causal text tower, the one ``packed_forward`` reproduces exactly.

    Plain ``Transformer`` of plain ``ResidualAttentionBlock``s with a packed in-projection, no zero-attention or
    key/value biases, no attention dropout in training, an exactly causal mask and EOT (argmax) pooling.
    The verdict is kept per model (and train/eval mode): the training loop asks at every encode, and reading the
    mask costs device synchronisations.
    """
    try:
        training, verdict = _CHECKED[model]
        if training == model.training:
            return verdict
    except (KeyError, TypeError, AttributeError):  # first call, or an object that cannot be weakly referenced
        pass
    verdict = _check_packing(model)
    with contextlib.suppress(TypeError, AttributeError):
        _CHECKED[model] = (model.training, verdict)
    return verdict


def _check_packing(model: Any) -> bool:
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    transformer = getattr(model, "transformer", None)
    transformer = getattr(transformer, "_orig_mod", transformer)  # a torch.compile wrapper around the same module
    if type(transformer) is not Transformer or not len(transformer.resblocks) or not pools_at_argmax(model):
        return False
    if not _is_causal(getattr(model, "attn_mask", None)):
        return False
    for block in transformer.resblocks:
        attn = getattr(block, "attn", None)
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
            return False
        if not isinstance(attn, torch.nn.MultiheadAttention) or attn.in_proj_weight is None or attn.bias_k is not None:
            return False
        if not attn.batch_first or attn.add_zero_attn or (attn.dropout and attn.training):
            return False
    return True


def _is_causal(mask: torch.Tensor | None) -> bool:
    """``mask`` is the additive causal mask (``-inf`` above the diagonal, ``0`` elsewhere)."""
    if mask is None or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    upper = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.isneginf(mask[upper]).all()) and bool((mask[~upper] == 0).all())


def _attention(block: Any, x: torch.Tensor, plan: dict[str, Any], kernel: str) -> torch.Tensor:
    """Causal self-attention of block ``block`` on packed tokens ``x`` (T, W); returns (T, W) before out_proj."""
    attn = block.attn
    heads, width = attn.num_heads, x.shape[-1]
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    if kernel != "padded":  # variable-length kernels work on the packed (T, H, Dh) tensors directly
        q, k, v = qkv.view(-1, 3, heads, width // heads).unbind(1)
        return VARLEN[kernel](q, k, v, plan["cu_seqlens"], plan["length"]).reshape(-1, width)
    batch, length, flat = plan["batch"], plan["length"], plan["flat"]
    padded = qkv.new_zeros(batch * length, 3 * width).index_copy(0, flat, qkv)
    q, k, v = padded.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, Dh); padding follows EOT
    return out.transpose(1, 2).reshape(batch * length, width).index_select(0, flat)


def encode_packed(
    model: Any,
    tokens: torch.Tensor,
    pseudo_tokens: torch.Tensor | None = None,
    placeholder_id: int = 259,
    compiled: bool = False,
    plan: PackPlan | None = None,
    attention: str = "padded",
    graphs: bool = False,
) -> torch.Tensor:
    """Unnormalised projected features of ``tokens`` (B, 77), as ``backbones.encode_tokens`` computes them.

    ``plan``: the batch's packing plan on the device (``packplan.plan_pack``); without one it is built from
    ``tokens`` here, which reads them back to the host (one synchronisation). ``attention``: the kernel
    (``varlen.KERNELS``). ``compiled`` runs the tower through ``torch.compile`` (dynamic shapes: the token count
    changes every batch); ``graphs`` captures CUDA graphs, one per bucket (of inductor's kernels when
    ``compiled``), which needs a bucketed plan."""
    if plan is None:
        host = plan_pack(tokens.cpu(), rows=len(tokens) if graphs else None)  # the one host sync
        plan = host.to(tokens.device, non_blocking=True)
    if graphs and not plan.bucketed:
        raise ValueError("CUDA graphs need a bucketed plan (plan_pack(..., rows=N)): its shapes repeat")
    if pseudo_tokens is not None and plan.batch > pseudo_tokens.shape[0]:  # dummy rows of a bucketed plan
        pseudo_tokens = F.pad(pseudo_tokens, (0, 0, 0, plan.batch - pseudo_tokens.shape[0]))
    arrays = {name: getattr(plan, name) for name in ("flat", "positions", "rows", "ends", "cu_seqlens")}
    mode = ("graphs+inductor" if compiled else "graphs") if graphs else ("dynamic" if compiled else None)
    forward = _compiled_forward(mode) if mode else packed_forward
    out = forward(model, plan.ids, pseudo_tokens, placeholder_id, plan.batch, plan.length, attention, **arrays)
    if graphs:  # a graph's output buffer is overwritten at its next replay: keep a copy
        out = out.clone()
    return out[: plan.real] if plan.batch > plan.real else out


def packed_forward(
    model: Any,
    ids: torch.Tensor,
    pseudo_tokens: torch.Tensor | None,
    placeholder_id: int,
    batch: int,
    length: int,
    attention: str,
    flat: torch.Tensor,
    positions: torch.Tensor,
    rows: torch.Tensor,
    ends: torch.Tensor,
    cu_seqlens: torch.Tensor,
) -> torch.Tensor:
    """The tower on packed ids (T,): embeddings, blocks, final norm and projection of the EOT rows."""
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(ids).to(cast_dtype)
    if pseudo_tokens is not None:
        slots = (ids == placeholder_id).unsqueeze(-1)
        x = torch.where(slots, pseudo_tokens.to(cast_dtype).index_select(0, rows), x)
    x = x + model.positional_embedding.to(cast_dtype).index_select(0, positions)
    plan = {"batch": batch, "length": length, "flat": flat, "cu_seqlens": cu_seqlens}
    blocks = list(model.transformer.resblocks)
    for i, block in enumerate(blocks):
        attended = _attention(block, block.ln_1(x), plan, attention)
        if i == len(blocks) - 1:  # only the EOT rows are pooled: finish the last block on them alone
            x, attended = x.index_select(0, ends), attended.index_select(0, ends)
        x = x + block.ls_1(block.attn.out_proj(attended))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return project_text(model, model.ln_final(x))


@functools.cache
def _compiled_forward(mode: str):
    """``dynamic``: inductor, one graph for every token count. ``graphs``: CUDA graphs of the eager kernels
    (dynamo's ``cudagraphs`` backend: no code generation, so capturing a new bucket takes seconds);
    ``graphs+inductor``: CUDA graphs of inductor's kernels (``reduce-overhead``). Both graph modes use static
    shapes, one capture per bucket, with and without gradients: the recompile limit is raised to hold them all."""
    if mode == "dynamic":
        return torch.compile(packed_forward, dynamic=True)
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 4 * len(TOKENS_PER_ROW))
    if mode == "graphs":
        return torch.compile(packed_forward, backend="cudagraphs", dynamic=False)
    return torch.compile(packed_forward, mode="reduce-overhead", dynamic=False)
