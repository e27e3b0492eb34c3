"""The ``mteb`` method: an mteb encoder gets exactly the batches mteb's own retrieval pipeline builds, and gives
exactly the embeddings that pipeline gets from it (mteb's shipped ``CLIPModel`` wrapper, unmodified, on a tiny random
CLIP folder); identities, refusals, and a CIRR run whose metrics equal a hand computation from the same embeddings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_hf import tiny_clip_folder
from typer.testing import CliRunner

pytest.importorskip("mteb")

from cirbench.embedders import mteb_adapter  # noqa: E402
from cirbench.errors import MethodError  # noqa: E402
from cirbench.identity import file_sha256  # noqa: E402

FOLDER_VARIABLE = "CIRBENCH_TEST_TINY_CLIP"
FACTORY = "python:test_mteb_adapter:tiny_clip_encoder"
CIRR_PROMPT = "Retrieve a day-to-day image that aligns with the modification instructions of the provided image."
META = {"similarity": "cosine", "trained_on": set()}  # what the factory's meta states (a test may change it)


def tiny_clip_encoder(device: str = "cpu"):
    """The factory ``-o model=python:test_mteb_adapter:tiny_clip_encoder`` names: mteb's own CLIP wrapper, as
    shipped, on the tiny folder, with a ModelMeta naming it."""
    from mteb.models.model_implementations.clip_models import CLIPModel
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    model = CLIPModel(os.environ[FOLDER_VARIABLE], revision=None, device=device)
    model.mteb_model_meta = ModelMeta.create_empty(
        {
            "name": "tiny/clip",
            "revision": "r0",
            "modalities": ["image", "text"],
            "similarity_fn_name": ScoringFunction(META["similarity"]),
            "training_datasets": META["trained_on"],
        }
    )
    return model


def not_an_encoder(device: str = "cpu"):
    return object()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return tiny_clip_folder(tmp_path_factory.mktemp("tiny-clip") / "clip")


@pytest.fixture
def factory_env(clip_folder, monkeypatch):
    monkeypatch.setenv(FOLDER_VARIABLE, str(clip_folder))
    return clip_folder


def noise_images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 44 - 3 * i, 3), dtype=np.uint8)) for i in range(n)]


class Spy:
    """Passes every call to the wrapped mteb model untouched and records what it was given and gave back."""

    def __init__(self, inner):
        self.inner, self.mteb_model_meta, self.calls = inner, inner.mteb_model_meta, []

    def encode(self, inputs, **kwargs):
        out = self.inner.encode(inputs, **kwargs)
        self.calls.append((kwargs, list(inputs), torch.as_tensor(out).clone()))
        return out

    def similarity(self, a, b):
        return self.inner.similarity(a, b)

    def similarity_pairwise(self, a, b):
        return self.inner.similarity_pairwise(a, b)


def mteb_pipeline_calls(model, images, query_images, texts, batch_size):
    """What mteb's own retrieval evaluation (``SearchEncoderWrapper`` over ``create_dataloader``) passes through the
    model for an in-memory CIRR-like task, built as mteb's mock tasks are."""
    import mteb
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    class TinyCIRR(AbsTaskRetrieval):
        metadata = mteb.get_task("CIRRIT2IRetrieval").metadata

        def load_data(self, num_proc=None, **kwargs):
            queries = Dataset.from_dict(
                {"id": [str(i) for i in range(len(texts))], "text": texts, "image": list(query_images)}
            )
            corpus = Dataset.from_dict({"id": [str(i) for i in range(len(images))], "image": list(images)})
            qrels = {str(i): {"0": 1} for i in range(len(texts))}
            self.dataset = {
                "default": {
                    "test": RetrievalSplitData(queries=queries, corpus=corpus, relevant_docs=qrels, top_ranked=None)
                }
            }
            self.data_loaded = True

    spy = Spy(model)
    TinyCIRR().evaluate(spy, encode_kwargs={"batch_size": batch_size, "show_progress_bar": False})
    return {kwargs["prompt_type"].value: (kwargs, batches, out) for kwargs, batches, out in spy.calls}


def same_batches(ours: list[dict], theirs: list[dict]) -> bool:
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        if set(a) != set(b):
            return False
        for key in a:
            if key == "image":
                pairs = zip(a[key], b[key], strict=True)
                if not all(x.mode == y.mode and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs):
                    return False
            elif list(a[key]) != list(b[key]):
                return False
    return True


def test_the_adapter_gives_mteb_pipeline_batches_and_embeddings_exactly(factory_env, one_thread):
    images, query_images = noise_images(5), noise_images(3, seed=1)
    texts = ["make it green", "the same dog at night", "remove the car"]
    options = {"model": FACTORY, "task": "CIRRIT2IRetrieval", "batch_size": 2}
    encoder = mteb_adapter.load(options, "cpu", False)
    encoder.model = Spy(encoder.model)
    gallery = encoder.encode_image(images)
    queries = encoder.encode_pairs(query_images, texts)
    ours = {kwargs["prompt_type"].value: (kwargs, batches, out) for kwargs, batches, out in encoder.model.calls}
    theirs = mteb_pipeline_calls(tiny_clip_encoder(), images, query_images, texts, batch_size=2)
    for side, rows in (("document", gallery), ("query", queries)):
        kwargs, batches, out = ours[side]
        ref_kwargs, ref_batches, ref_out = theirs[side]
        assert kwargs == ref_kwargs  # task metadata (CIRR's, with its prompt), split, subset, prompt type, batch size
        assert same_batches(batches, ref_batches), side  # {"id", "image"} / {"id", "text", "image", "query"}
        assert torch.equal(rows, ref_out.float()) and torch.equal(out, ref_out)
    assert set(ours["query"][1][0]) == {"id", "text", "image", "query"} and set(ours["document"][1][0]) == {
        "id",
        "image",
    }


def test_queries_average_their_normalised_variants_and_describe_the_model(factory_env, one_thread):
    from cirbench.methods import build_method

    encoder = mteb_adapter.load({"model": FACTORY, "task": "CIRRIT2IRetrieval"}, "cpu", False)
    method = build_method("mteb", encoder, None, {"model": FACTORY, "task": "CIRRIT2IRetrieval"})
    refs = noise_images(2, seed=3)
    texts = [["add a hat", "a hat and a scarf"], ["make it red"]]
    got = method.encode_queries([], texts, refs)
    rows = F.normalize(
        encoder.encode_pairs([refs[0], refs[0], refs[1]], ["add a hat", "a hat and a scarf", "make it red"])
    )
    want = F.normalize(torch.stack([rows[0] + rows[1], rows[2]]), dim=-1)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(got.norm(dim=-1), torch.ones(2))
    assert method.describe() == {
        "model": "tiny/clip",
        "revision": "r0",
        "mteb": mteb_adapter.mteb_version(),
        "task": "CIRRIT2IRetrieval",
        "task_prompt": CIRR_PROMPT,
        "similarity": "cosine",
        "fiq_join": "c1-and-c2",
    }
    assert (method.info.name, method.info.variant, method.info.zero_shot) == ("mteb", "tiny/clip", None)
    assert method.info.training_data == "mteb ModelMeta lists none"  # mteb leaves VLM2Vec's list empty: unknown
    assert encoder.image_embed_dim == 16 and encoder.model_key.startswith("mteb|python:test_mteb_adapter")


@pytest.mark.parametrize(
    ("trained_on", "task", "zero_shot"),
    [
        ({"CIRRIT2IRetrieval", "MSCOCO"}, "CIRRIT2IRetrieval", False),
        ({"MSCOCO"}, "CIRRIT2IRetrieval", True),
        ({"MSCOCO"}, "", None),
    ],
)
def test_zero_shot_is_what_mteb_meta_says(factory_env, monkeypatch, trained_on, task, zero_shot):
    from cirbench.methods import build_method

    monkeypatch.setitem(META, "trained_on", trained_on)
    encoder = mteb_adapter.load({"model": FACTORY, "task": task}, "cpu", False)
    info = build_method("mteb", encoder, None, {"model": FACTORY, "task": task}).info
    assert info.zero_shot is zero_shot and info.training_data == f"mteb ModelMeta: {', '.join(sorted(trained_on))}"


def test_identity_names_model_revision_and_mteb_version_without_loading():
    version = mteb_adapter.mteb_version()
    identity = mteb_adapter.identify({"model": "openai/clip-vit-base-patch32"})
    assert identity.id == "mteb:openai/clip-vit-base-patch32" and identity.quick_gelu is False
    assert (
        identity.weights_id == f"openai/clip-vit-base-patch32@3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268|mteb={version}"
    )
    python = mteb_adapter.identify({"model": FACTORY})
    assert python.weights_id == f"{FACTORY}@sha256:{file_sha256(Path(__file__))}|mteb={version}"
    generic = mteb_adapter.task_metadata("")
    assert (generic.name, generic.category, mteb_adapter.query_prompt(generic)) == ("cirbench-it2i", "it2i", None)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (
            {"model": "openai/clip-vit-base-patch32", "revision": "abc"},
            "mteb registers openai/clip-vit-base-patch32 at",
        ),
        ({"model": "someone/not-registered"}, "is not in mteb"),
        ({"model": "python:nowhere_at_all:f"}, "cannot find module 'nowhere_at_all'"),
        ({"model": "python:only_module"}, "is not python:pkg.module:factory"),
        ({"model": FACTORY, "revision": "abc"}, "drop the revision"),
        ({"model": FACTORY, "task": "NoSuchTask"}, "is not an mteb task"),
        ({"model": FACTORY, "task": "STS12"}, "is an mteb t2t task"),
        ({}, "needs -o model=NAME"),
    ],
)
def test_identify_refuses_in_one_line(options, fragment):
    with pytest.raises(MethodError) as error:
        mteb_adapter.identify(options)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_registry_model_is_not_downloaded_without_allow_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to load offline
    with pytest.raises(MethodError) as error:
        mteb_adapter.load({"model": "openai/clip-vit-base-patch32"}, "cpu", False)
    assert "--allow-download" in str(error.value) and "openai/clip-vit-base-patch32" in str(error.value)


def test_a_factory_must_give_an_mteb_encoder():
    with pytest.raises(MethodError, match=r"gave object, which has no encode\(\): not an mteb encoder"):
        mteb_adapter.load({"model": "python:test_mteb_adapter:not_an_encoder"}, "cpu", False)


def test_similarities_other_than_cosine_are_checked(factory_env, monkeypatch, one_thread):
    monkeypatch.setitem(META, "similarity", "MaxSim")
    with pytest.raises(MethodError, match="scores with MaxSim similarity"):
        mteb_adapter.load({"model": FACTORY}, "cpu", False)
    monkeypatch.setitem(META, "similarity", "dot")
    encoder = mteb_adapter.load({"model": FACTORY}, "cpu", False)
    with pytest.raises(MethodError, match="scores with dot product but returns image embeddings of norm"):
        encoder.encode_image(noise_images(2))  # CLIP's raw projections are not unit length


def test_without_mteb_the_module_imports_and_use_is_one_line():
    code = (
        "import sys; sys.modules['mteb'] = None\n"
        "import cirbench.methods.mteb_model as m\n"
        "from cirbench.errors import UserError\n"
        "try:\n    m.mteb_adapter.identify({'model': 'x'})\nexcept UserError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "mteb is not installed; pip install 'cirbench[embedders]'"


# --------------------------------------------------------------------------------------------- end to end (CIRR)


def _noise_cirr_image(i: int):
    return noise_images(1, seed=100 + i)[0], ".png"


def test_cirr_run_metrics_equal_a_hand_computation_from_the_same_embeddings(tmp_path, factory_env, one_thread):
    from cirr_support import make_cirr

    from cirbench.cli import app
    from cirbench.io import read_json
    from cirbench.results import iter_results, rankings_path

    root = make_cirr(tmp_path / "CIRR", _noise_cirr_image)  # noise images: no near-ties between gallery scores
    results = tmp_path / "results"
    args = ["eval", "-m", "mteb", "-o", f"model={FACTORY}", "--benchmark", "cirr", "--split", "val"]
    out = CliRunner().invoke(app, [*args, "--root", str(root), "--results-dir", str(results), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    (result,) = list(iter_results(results))
    assert result.backbone.id == f"mteb:{FACTORY}"
    assert result.backbone.weights_id == mteb_adapter.identify({"model": FACTORY}).weights_id
    assert result.method.config["task"] == "CIRRIT2IRetrieval"  # the benchmark's default task, not given on the CLI
    assert (result.method.config["model"], result.method.config["revision"]) == ("tiny/clip", "r0")
    metrics, top = _hand_cirr(root)
    assert result.metrics == metrics
    assert read_json(rankings_path(result.path))["top"] == top


def test_using_the_method_without_mteb_is_one_line(tmp_path, cirr_split, monkeypatch):
    from cirbench.cli import app

    monkeypatch.setitem(sys.modules, "mteb", None)  # `import mteb` now raises ImportError, as when not installed
    args = ["eval", "-m", "mteb", "-o", "model=BAAI/BGE-VL-base", "--benchmark", "cirr", "--root", str(cirr_split)]
    out = CliRunner().invoke(app, [*args, "--results-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert out.exit_code == 2
    assert out.output.strip() == "error: mteb is not installed; pip install 'cirbench[embedders]'"


def _hand_cirr(root: Path) -> tuple[dict[str, float], dict[str, list[str]]]:
    """The official CIRR protocol by hand: reference removed, R@K on target_hard, subset ranking within the group;
    and each query's ranked gallery."""
    import json

    encoder = mteb_adapter.load({"model": FACTORY, "task": "CIRRIT2IRetrieval"}, "cpu", False)
    split = json.loads((root / "cirr" / "image_splits" / "split.rc2.val.json").read_text())
    names = list(split)
    opened = {n: Image.open(root / split[n]).convert("RGB") for n in names}
    gallery = F.normalize(encoder.encode_image([opened[n] for n in names]), dim=-1)
    records = json.loads((root / "cirr" / "captions" / "cap.rc2.val.json").read_text())
    pairs = [opened[r["reference"]] for r in records], [r["caption"] for r in records]
    scores = (F.normalize(encoder.encode_pairs(*pairs)) @ gallery.T).numpy()
    hits: dict[str, list[bool]] = {}
    top = {}
    for row, record in zip(scores, records, strict=True):
        ranked = [names[j] for j in np.argsort(-row, kind="stable") if names[j] != record["reference"]]
        top[str(record["pairid"])] = ranked
        for k in (1, 5, 10, 50):
            hits.setdefault(f"R@{k}", []).append(record["target_hard"] in ranked[:k])
        members = [m for m in ranked if m in record["img_set"]["members"]]
        for k in (1, 2, 3):
            hits.setdefault(f"Rsubset@{k}", []).append(record["target_hard"] in members[:k])
    return {name: round(100.0 * float(np.mean(v)), 6) for name, v in hits.items()}, top
