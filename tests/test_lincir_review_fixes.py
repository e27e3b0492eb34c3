"""Edge cases found in review: CSV captions that look like missing values, spaCy failures, GPU precision."""

from __future__ import annotations

import torch

from cirbench.lincir.config import resolve_precision
from cirbench.lincir.corpus import load_corpus
from cirbench.lincir.masking import Masker


def test_csv_captions_reading_na_are_kept(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text("text\nNA\nNone\nnull\na dog\n")
    assert list(load_corpus([str(path)]).texts()) == ["NA", "None", "null", "a dog"]


def test_spacy_failure_means_no_keywords_as_upstream():
    masker = Masker()

    class Broken:
        def pipe(self, *args, **kwargs):
            raise ValueError("E088: text too long")

        def __call__(self, text):
            if text == "bad":
                raise ValueError("E088")
            return masker_nlp(text)

    masker_nlp = masker.nlp
    masker.nlp = Broken()
    spans = masker.spans(["bad", "a red dog"])
    assert spans[0] == [] and [s.text for s in spans[1]] == ["a red dog"]


def test_gpu_towers_default_to_fp16_like_upstream():
    assert resolve_precision("auto", torch.device("cuda", 0)) == "fp16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cuda", 0)) == "bf16"
