"""The tokenizer LinCIR trains with, reproduced without ``transformers``.

Upstream tokenizes training captions with the slow HF ``CLIPTokenizer`` of SDXL's ``tokenizer_2`` plus an added
special token ``[$]`` (transformers 4.36, LINCIR.md §3). Its vocabulary and BPE merges are OpenAI CLIP's, but the
text path differs from ``open_clip.tokenize`` in three ways that change ids:

- added/special tokens are split out *before* BPE: ``[$]`` (-> 49408, which upstream rewrites to 259), the
  bos/eos strings, and the pad token ``!``, so every ``!`` becomes the lone id 0 instead of merging (``"!!"``);
- cleaning is ``whitespace_clean(ftfy.fix_text(text)).lower()`` per piece (no ``html.unescape``);
- decoding (used to cut long captions to 75 BPE tokens) joins pieces and applies HF's
  ``clean_up_tokenization`` (``" ." -> "."`` ...).

Reproducing those rules here keeps the cirbench token ids identical to upstream's on any caption.
"""

from __future__ import annotations

from functools import lru_cache

import ftfy
import regex

BOS_ID = 49406
EOS_ID = 49407
PAD_ID = 0
PLACEHOLDER_ID = 259  # BPE "$</w>": what upstream rewrites its added "[$]" id 49408 to
PLACEHOLDER = "[$]"  # the special-token string upstream puts in the masked text
CONTEXT_LENGTH = 77

# HF's added tokens for this tokenizer (bos, eos/unk, pad "!", and "[$]"), split out before BPE.
_SPECIAL_IDS = {"<|startoftext|>": BOS_ID, "<|endoftext|>": EOS_ID, "!": PAD_ID, PLACEHOLDER: PLACEHOLDER_ID}
_SPECIAL_SPLIT = regex.compile(r"(<\|startoftext\|>|<\|endoftext\|>|\[\$\]|!)")
_PAT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WS = regex.compile(r"\s+")
_SPECIAL_TEXT = {BOS_ID: "<|startoftext|>", EOS_ID: "<|endoftext|>"}


@lru_cache(maxsize=1)
def _bpe():
    """open_clip's SimpleTokenizer: the same vocabulary, merges and BPE routine as HF's CLIPTokenizer."""
    from open_clip.tokenizer import _tokenizer

    return _tokenizer


def _clean(text: str) -> str:
    return _WS.sub(" ", ftfy.fix_text(text)).strip().lower()


def encode(text: str) -> list[int]:
    """BPE ids of ``text`` without bos/eos, exactly as upstream's tokenizer (``[$]`` -> 259, ``!`` -> 0)."""
    tok = _bpe()
    ids: list[int] = []
    for piece in _SPECIAL_SPLIT.split(text):
        if not piece:
            continue
        special = _SPECIAL_IDS.get(piece)
        if special is not None:
            ids.append(special)
            continue
        for word in _PAT.findall(_clean(piece)):
            word = "".join(tok.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(tok.encoder[bpe_token] for bpe_token in tok.bpe(word).split(" "))
    return ids


def with_specials(ids: list[int], context_length: int = CONTEXT_LENGTH) -> list[int]:
    """``[bos] + ids[:context-2] + [eos]``: HF ``truncation=True`` (no padding; pad id 0 is added by the collator)."""
    return [BOS_ID, *ids[: context_length - 2], EOS_ID]


def tokenize(text: str, context_length: int = CONTEXT_LENGTH) -> list[int]:
    """Upstream ``tokenizer(text, truncation=True)`` input ids, unpadded."""
    return with_specials(encode(text), context_length)


def _cleanup_spaces(text: str) -> str:
    """HF ``clean_up_tokenization`` (on by default in transformers 4.36)."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def decode(ids: list[int]) -> str:
    """HF ``batch_decode`` of ids (no special-token skipping, cleanup on), as upstream's caption truncation uses."""
    tok = _bpe()
    text = "".join(_SPECIAL_TEXT.get(i) or tok.decoder[i] for i in ids)
    raw = bytearray(tok.byte_decoder[c] for c in text).decode("utf-8", errors="replace")
    return _cleanup_spaces(raw.replace("</w>", " ").strip())


def display(ids: list[int]) -> str:
    """Readable form of token ids with the placeholder shown as ``$`` (259 is ``"$</w>"``); specials dropped."""
    tok = _bpe()
    body = list(ids)
    if body and body[0] == BOS_ID:
        body = body[1:]
    if EOS_ID in body:
        body = body[: body.index(EOS_ID)]
    text = "".join(tok.decoder[i] for i in body)
    return bytearray(tok.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ").strip()
