"""Builders of tiny random Hugging Face model folders, for tests that must not download anything.

``tiny_clip_folder(path)`` writes a ``transformers.CLIPModel`` with a locally built BPE tokenizer and a 32-pixel
image processor; ``tiny_qwen2vl_folder(path)`` writes a ``Qwen2VLForConditionalGeneration`` (two text layers, a
one-block vision tower) whose locally built byte-level tokenizer gives the Qwen2-VL special tokens exactly the ids
its config names. Both are seeded, so the same call gives the same weights; both load with ``from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch

# A few word pieces so ordinary English is not all single bytes (the merges are applied left to right).
_MERGES = [("t", "h"), ("th", "e"), ("a", "n"), ("i", "n"), ("e", "d"), ("o", "n"), ("e", "r"), ("r", "e")]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (CLIP and Qwen2 BPE vocabularies use it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


# ---------------------------------------------------------------- CLIP


def tiny_clip_folder(path: Path | str, seed: int = 0, projection_dim: int = 16) -> Path:
    """A tiny random ``CLIPModel`` + ``CLIPProcessor`` (tokenizer built here, 32x32 images) saved to ``path``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path = Path(path)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [(a, b + "</w>") if i % 2 else (a, b) for i, (a, b) in enumerate(_MERGES)] + list(_MERGES)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    bos, eos = len(vocab), len(vocab) + 1
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = bos, eos
    tokenizer = CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=77)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


# ---------------------------------------------------------------- Qwen2-VL

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16 * 28 * 28


def tiny_qwen2vl_folder(path: Path | str, seed: int = 0, hidden: int = 32) -> Path:
    """A tiny random ``Qwen2VLForConditionalGeneration`` + processor saved to ``path``.

    The tokenizer is byte-level BPE over the 256 byte characters and a few merges, then the Qwen2-VL special
    tokens, whose ids the config's ``image_token_id`` / ``vision_start_token_id`` / ... name. Images are resized
    to between 4 and 16 merged patches (28 px each side).
    """
    from transformers import (
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    path = Path(path)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for a, b in _MERGES:
        vocab.setdefault(a + b, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=list(_MERGES),
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in QWEN_SPECIALS if t != "<|endoftext|>"]})
    tokenizer.add_special_tokens({"pad_token": "<|endoftext|>"})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=1,
            embed_dim=16,
            hidden_size=hidden,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    pixels = dict(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
    )
    processor.save_pretrained(path)
    return path
