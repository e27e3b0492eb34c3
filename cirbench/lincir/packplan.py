"""The packing plan of a batch: where each real token goes, built on the host from the token ids.

Why on the host: the ids come from the mask cache, so their lengths are known before the batch reaches the device.
Building the plan there costs no device-to-host read (no synchronisation), and a background thread can build the
next step's plan while the device computes (``batches.py``).

Bucketing (for CUDA graphs, which need the same shapes at every replay): the plan can be padded to a fixed number
of rows and a token count from a short ladder. The added tokens (id 0) sit after a row's EOT or in dummy rows that
follow the real ones. The tower is causal and pools at EOT, so no real row attends to them; their outputs are
dropped. The real rows' features are those of the unbucketed plan (float rounding aside: matmuls of other shapes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from cirbench.text_encoding import eot_positions

# Tokens per row that a bucketed plan may hold on average: the token count T is rounded up to rows x one of these
# (capped at rows x context). About 10% apart where real batches land (35.7 tokens per row for upstream's corpus).
TOKENS_PER_ROW = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 27, 30, 33, 36, 40, 44, 48, 53, 58, 64, 70, 77)


@dataclass(frozen=True)
class PackPlan:
    """Index tensors of one packed batch (all on one device). Rows ``real:`` are dummy rows of a bucketed plan."""

    ids: torch.Tensor  # (T,) token id of every packed token (0 for bucket padding)
    flat: torch.Tensor  # (T,) slot of each token in the (batch, length) padded layout
    positions: torch.Tensor  # (T,) position of each token within its row
    rows: torch.Tensor  # (T,) row of each token
    ends: torch.Tensor  # (batch,) each row's pooled token (EOT) in the packed order
    cu_seqlens: torch.Tensor  # (batch + 1,) int32 cumulative row spans, for variable-length attention kernels
    batch: int  # rows in the layout (real + dummy)
    real: int  # real rows: the first ``real`` outputs are the batch's features
    length: int  # the padded layout's length (the longest span, or the context length when bucketed)
    bucketed: bool = False  # padded to fixed rows and a ladder token count (shapes that repeat: CUDA graphs)

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[0])

    def _map(self, fn) -> PackPlan:
        names = ("ids", "flat", "positions", "rows", "ends", "cu_seqlens")
        return dataclasses.replace(self, **{name: fn(getattr(self, name)) for name in names})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PackPlan:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> PackPlan:
        """Page-locked copies, so that ``to(cuda, non_blocking=True)`` neither blocks nor synchronises."""
        return self._map(lambda t: t.pin_memory())


def bucket_tokens(needed: int, rows: int, context: int) -> int:
    """The bucketed token count for ``needed`` tokens over ``rows`` rows: rows x the first ladder step that fits."""
    for per_row in TOKENS_PER_ROW:
        if rows * min(per_row, context) >= needed:
            return rows * min(per_row, context)
    return rows * context


def plan_pack(tokens: torch.Tensor, rows: int | None = None) -> PackPlan:
    """The plan of host ids ``tokens`` (B, context). ``rows`` pads it to that many rows and a bucketed token count."""
    if tokens.device.type != "cpu":
        raise ValueError("plan_pack builds the plan on the host: pass the batch's CPU ids")
    batch, context = tokens.shape
    lengths = (eot_positions(tokens) + 1).numpy().astype(np.int64)
    if rows is None:
        spans, length = lengths, int(lengths.max())
    else:
        if rows < batch:
            raise ValueError(f"a bucketed plan of {rows} rows cannot hold a batch of {batch}")
        spans, length = _bucketed_spans(lengths, rows, context), context
    n = len(spans)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(spans, out=starts[1:])
    row_of = np.repeat(np.arange(n, dtype=np.int64), spans)
    position = np.arange(int(starts[-1]), dtype=np.int64) - starts[row_of]
    flat = row_of * length + position
    padded = np.zeros((n, length), dtype=np.int64)
    inside = np.arange(length)[None, :] < lengths[:, None]
    padded[:batch][inside] = tokens[:, :length].numpy()[inside]  # bucket padding keeps id 0
    pooled = np.concatenate([lengths, spans[batch:]])  # dummy rows: any token (their output is dropped)
    return PackPlan(
        ids=torch.from_numpy(padded.reshape(-1)[flat]),
        flat=torch.from_numpy(flat),
        positions=torch.from_numpy(position),
        rows=torch.from_numpy(row_of),
        ends=torch.from_numpy(starts[:-1] + pooled - 1),
        cu_seqlens=torch.from_numpy(starts.astype(np.int32)),
        batch=n,
        real=batch,
        length=length,
        bucketed=rows is not None,
    )


def _bucketed_spans(lengths: np.ndarray, rows: int, context: int) -> np.ndarray:
    """Row spans holding ``lengths`` plus padding: one token per dummy row, then the bucket's remaining tokens
    filled into the dummy rows and after the real rows' EOTs, each row at most ``context`` long."""
    dummy = rows - len(lengths)
    spans = np.concatenate([lengths, np.ones(dummy, dtype=np.int64)])
    total = bucket_tokens(int(spans.sum()), rows, context)
    order = np.concatenate([np.arange(len(lengths), rows), np.arange(len(lengths))])  # dummy rows first
    room = context - spans[order]
    before = np.cumsum(room) - room
    spans[order] += np.clip(total - int(spans.sum()) - before, 0, room)
    return spans
