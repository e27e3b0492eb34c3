"""Hugging Face embedders (``hf-clip``, ``mllm-embedder``) against reference computations on tiny random models.

CLIP family: the query equals BGE-VL's math ``normalize(get_text_features + get_image_features)`` computed with
transformers directly. MLLM family: the embeddings equal those of mteb's VLM2Vec-V2 wrapper, run unmodified on the
same tiny Qwen2-VL (its hard-coded base model answered from a local hub cache built here, the LoRA adapter merged
by peft as it does), and last-token pooling is checked under both padding sides. Nothing is downloaded.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_hf import tiny_clip_folder, tiny_qwen2vl_folder

from cirbench.errors import BackboneError, OptionError
from cirbench.methods import get_method_entry

TEXTS = ["the red cat", "a dog on the mat, in the garden", "in green"]


def _images(sizes=((60, 80), (56, 56), (90, 40))) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for h, w in sizes]


def _built(name: str, options: dict):
    entry = get_method_entry(name)
    parsed = entry.parse_options(options)
    encoder = entry.encoder.load(parsed, "cpu", False)
    return entry, parsed, encoder, entry.factory(encoder, None, parsed)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return tiny_clip_folder(tmp_path_factory.mktemp("hf") / "tiny-clip")


# ---------------------------------------------------------------- CLIP family


def _reference_clip(folder, texts, images):
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        text = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        image = model.get_image_features(pixel_values=batch["pixel_values"])
    return getattr(text, "pooler_output", text), getattr(image, "pooler_output", image)


def test_clip_query_is_bge_vl_math(clip_folder, one_thread):
    """sum-raw queries == normalize(text + image) (BGE-VL, CLIP_SF); candidates == normalised image features;
    sum-normalised == normalize(normalize(text) + normalize(image))."""
    images = _images()
    text, image = _reference_clip(clip_folder, TEXTS, images)
    _, _, encoder, method = _built("hf-clip", {"model": str(clip_folder)})
    refs = encoder.encode_image(torch.stack([encoder.preprocess(i) for i in images]))
    torch.testing.assert_close(F.normalize(refs, dim=-1), F.normalize(image, dim=-1), atol=1e-6, rtol=0)
    queries = method.encode_queries([None] * 3, [[t] for t in TEXTS], refs)
    torch.testing.assert_close(queries, F.normalize(text + image, dim=-1), atol=1e-6, rtol=0)
    _, _, _, normalised = _built("hf-clip", {"model": str(clip_folder), "fusion": "sum-normalised"})
    expected = F.normalize(F.normalize(text, dim=-1) + F.normalize(image, dim=-1), dim=-1)
    torch.testing.assert_close(
        normalised.encode_queries([None] * 3, [[t] for t in TEXTS], refs), expected, atol=1e-6, rtol=0
    )
    # two variants of one query: the mean of their normalised fused rows, renormalised
    both = method.encode_queries([None], [TEXTS[:2]], refs[:1])
    text2, image2 = _reference_clip(clip_folder, TEXTS[:2], [images[0]] * 2)
    rows = F.normalize(text2 + image2, dim=-1)
    torch.testing.assert_close(both, F.normalize(rows.sum(0, keepdim=True), dim=-1), atol=1e-6, rtol=0)
    assert method.caption_join == "c1-and-c2" and method.info.variant == "tiny-clip"


def test_clip_truncation_and_identity(clip_folder, tmp_path):
    """max_text_tokens truncates (start and end included); the identity names the folder's hash without loading;
    a pinned hub revision is the weights id; a hub id absent from the cache is one line naming --allow-download."""
    entry, parsed, encoder, _ = _built("hf-clip", {"model": str(clip_folder), "max_text_tokens": 5})
    assert encoder.tokenize(["the red cat is on the mat today"])["input_ids"].shape[1] == 5
    identity = entry.encoder.identify(parsed)
    assert identity.id == "hf-clip:tiny-clip" and identity.weights_id.startswith("sha256:")
    assert identity.weights_id.endswith("|fp32") and encoder.model_key == f"{identity.id}|{identity.weights_id}"
    pinned = entry.parse_options({"model": "BAAI/BGE-VL-base", "revision": "a" * 40, "precision": "fp16"})
    assert entry.encoder.identify(pinned).weights_id == f"BAAI/BGE-VL-base@{'a' * 40}|fp16"
    copy = shutil.copytree(clip_folder, tmp_path / "copy")
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:-1] + b"\0")
    other = entry.encoder.identify(entry.parse_options({"model": str(copy)}))
    assert other.weights_id != identity.weights_id
    with pytest.raises(BackboneError, match="not in the local Hugging Face cache.*--allow-download"):
        entry.encoder.load(entry.parse_options({"model": "nobody-here/no-such-model"}), "cpu", False)
    with pytest.raises(OptionError, match="neither an existing folder nor a Hugging Face hub id"):
        entry.encoder.identify(entry.parse_options({"model": "no/such/thing"}))
    with pytest.raises(OptionError, match="option model is required"):
        entry.encoder.identify(entry.parse_options({}))


# ---------------------------------------------------------------- MLLM family


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """A tiny Qwen2-VL base, a random LoRA adapter on it (with the processor, as VLM2Vec-V2's repo holds), and a
    local hub cache where ``Qwen/Qwen2-VL-2B-Instruct`` (the wrapper's hard-coded base) is that tiny base."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    root = tmp_path_factory.mktemp("qwen")
    base = tiny_qwen2vl_folder(root / "base")
    try:
        import peft
    except ImportError:  # the adapter tests skip; the base model serves the others
        return root
    torch.manual_seed(1)
    model = Qwen2VLForConditionalGeneration.from_pretrained(base)
    lora = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(model, lora).save_pretrained(root / "adapter")
    AutoProcessor.from_pretrained(base).save_pretrained(root / "adapter")
    repo = root / "hub" / "models--Qwen--Qwen2-VL-2B-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(base, repo / "snapshots" / ("0" * 40))
    return root


def test_mllm_equals_mteb_vlm2vec_v2_wrapper(qwen, one_thread):
    """``preset=vlm2vec-v2`` queries and documents == mteb 2.26.24's VLM2VEC2Wrapper.encode on the same model."""
    pytest.importorskip("peft")
    pytest.importorskip("mteb")
    import mteb
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    from mteb.models.model_implementations.vlm2vec_models import VLM2VEC2Wrapper
    from mteb.types import PromptType
    from torch.utils.data import DataLoader

    images = _images()
    wrapper = VLM2VEC2Wrapper(
        str(qwen / "adapter"),
        device="cpu",
        torch_dtype=torch.float32,
        cache_dir=str(qwen / "hub"),
        local_files_only=True,
    )
    metadata = mteb.get_task("CIRRIT2IRetrieval").metadata

    def reference(columns: dict, features: dict, prompt_type) -> torch.Tensor:
        data = Dataset.from_dict(columns, features=Features(features))
        loader = DataLoader(data, batch_size=3, collate_fn=lambda rows: {k: [r[k] for r in rows] for k in columns})
        out = wrapper.encode(
            loader, task_metadata=metadata, hf_split="test", hf_subset="default", prompt_type=prompt_type
        )
        return torch.as_tensor(out)

    queries = reference(
        {"text": TEXTS, "image": images}, {"text": Value("string"), "image": ImageFeature()}, PromptType.query
    )
    documents = reference({"image": images}, {"image": ImageFeature()}, PromptType.document)
    options = {"model": str(qwen / "adapter"), "base_model": str(qwen / "base"), "batch_size": 2}
    _, _, encoder, method = _built("mllm-embedder", options)
    ours = method.encode_queries([None] * 3, [[t] for t in TEXTS], images)
    torch.testing.assert_close(ours, queries, atol=1e-6, rtol=0)
    gallery = encoder.encode_image(encoder.collate([encoder.preprocess(i) for i in images]))
    torch.testing.assert_close(F.normalize(gallery, dim=-1), documents, atol=1e-6, rtol=0)


@pytest.mark.parametrize("preset", ["vlm2vec-v2", "gme"])
def test_mllm_last_token_pooling_both_sides(qwen, preset, one_thread):
    """Rows == normalize(h[i, last non-pad]) of the model's final hidden states under left and right padding, and
    the two sides give the same rows; GME's sequential positions == the language model's own 1-D positions."""
    images = _images()
    rows = {}
    for side in ("left", "right"):
        options = {"model": str(qwen / "base"), "preset": preset, "padding_side": side, "batch_size": 3}
        _, _, encoder, method = _built("mllm-embedder", options)
        batch = encoder.inputs(encoder.query_prompts(TEXTS), [encoder.preprocess(i) for i in images])
        mask = batch["attention_mask"]
        assert bool((mask[:, -1] == 1).all()) == (side == "left") and not bool((mask == 1).all())
        with torch.no_grad():
            if preset == "gme":  # GME's released code: merged embeddings through the language model, 1-D positions
                inner = encoder.model.model
                embeds = inner.get_input_embeddings()(batch["input_ids"])
                vision = inner.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True)
                image_rows = torch.cat(vision.pooler_output)
                embeds[batch["input_ids"] == encoder.model.config.image_token_id] = image_rows
                hidden = inner.language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
            else:
                hidden = encoder.model(**batch, output_hidden_states=True, use_cache=False)
            h = hidden.last_hidden_state if preset == "gme" else hidden.hidden_states[-1]
        last = [int(torch.nonzero(m).max()) for m in mask]
        expected = F.normalize(torch.stack([h[i, j] for i, j in enumerate(last)]), dim=-1)
        rows[side] = method.encode_queries([None] * 3, [[t] for t in TEXTS], images)
        torch.testing.assert_close(rows[side], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(rows["left"], rows["right"], atol=1e-5, rtol=0)


def test_mllm_options_are_checked(qwen):
    """A template with an unknown field, and an adapter without its base, are one line each."""
    entry = get_method_entry("mllm-embedder")
    with pytest.raises(OptionError, match="only \\{instruction\\} and \\{text\\}"):
        entry.encoder.identify(entry.parse_options({"model": str(qwen / "base"), "query_template": "{image} {text}"}))
    if (qwen / "adapter").is_dir():
        with pytest.raises(OptionError, match="base_model"):
            entry.encoder.load(entry.parse_options({"model": str(qwen / "adapter")}), "cpu", False)
    gme = entry.encoder.identify(entry.parse_options({"model": str(qwen / "base"), "preset": "gme"}))
    v2 = entry.encoder.identify(entry.parse_options({"model": str(qwen / "base")}))
    assert gme.id == v2.id == "mllm:base" and gme.weights_id != v2.weights_id  # document prompts differ


# ---------------------------------------------------------------- end to end


def test_cli_eval_hf_clip_equals_metrics_by_hand(clip_folder, cirr_split, tmp_path, one_thread):
    """``cirbench eval -m hf-clip`` on a tiny CIRR split: its metrics == R@K and Rsubset@K computed here from the
    same encoder's gallery and query rows (reference removed, the group's other members as the subset)."""
    import json

    from typer.testing import CliRunner

    from cirbench.cli import app
    from cirbench.results import iter_results

    results = tmp_path / "results"
    args = ["eval", "-m", "hf-clip", "-o", f"model={clip_folder}", "--benchmark", "cirr", "--split", "val"]
    out = CliRunner().invoke(app, [*args, "--root", str(cirr_split), "--results-dir", str(results), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    (result,) = list(iter_results(results))

    _, _, encoder, method = _built("hf-clip", {"model": str(clip_folder)})
    names = sorted(json.loads((cirr_split / "cirr/image_splits/split.rc2.val.json").read_text()))
    pixels = [encoder.preprocess(Image.open(cirr_split / "dev" / f"{n}.png").convert("RGB")) for n in names]
    raw = encoder.encode_image(torch.stack(pixels))
    gallery = F.normalize(raw, dim=-1)
    captions = json.loads((cirr_split / "cirr/captions/cap.rc2.val.json").read_text())
    refs = raw[[names.index(c["reference"]) for c in captions]]
    queries = method.encode_queries([None] * len(captions), [[c["caption"]] for c in captions], refs)
    scores = (queries @ gallery.T).numpy()
    hits: dict[str, list[float]] = {f"R@{k}": [] for k in (1, 5, 10, 50)} | {f"Rsubset@{k}": [] for k in (1, 2, 3)}
    for row, c in zip(scores, captions, strict=True):
        order = [names[j] for j in np.argsort(-row, kind="stable") if names[j] != c["reference"]]
        subset = [n for n in order if n in c["img_set"]["members"]]
        for k in (1, 5, 10, 50):
            hits[f"R@{k}"].append(float(c["target_hard"] in order[:k]))
        for k in (1, 2, 3):
            hits[f"Rsubset@{k}"].append(float(c["target_hard"] in subset[:k]))
    assert result.metrics == pytest.approx({k: 100 * float(np.mean(v)) for k, v in hits.items()}, abs=1e-9)
    assert result.method.name == "hf-clip" and result.method.variant == "tiny-clip"


def test_cli_hub_id_absent_is_one_line(cirr_split, tmp_path, monkeypatch):
    """A hub id that is not in the local cache, without --allow-download: exit 2 and the fix, nothing fetched."""
    from typer.testing import CliRunner

    from cirbench.cli import app

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    args = ["eval", "-m", "hf-clip", "-o", "model=nobody-here/no-such-model", "--benchmark", "cirr", "--split", "val"]
    out = CliRunner().invoke(app, [*args, "--root", str(cirr_split), "--results-dir", str(tmp_path), "--device", "cpu"])
    assert out.exit_code == 2, out.output
    assert "error: weights for nobody-here/no-such-model are not in the local Hugging Face cache" in out.output
    assert "--allow-download" in out.output
