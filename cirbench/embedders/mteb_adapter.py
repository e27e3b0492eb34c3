"""Any mteb 2.x encoder as cirbench's gallery and query encoder, fed exactly the batches mteb's own pipeline builds.

Why this shape: mteb's multimodal wrappers (CLIP, SigLIP, BGE-VL, VLM2Vec, GME, E5-V, ...) each decide prompts,
fusion and pooling inside ``encode(dataloader, task_metadata=..., prompt_type=...)``, and they read the dataloader's
``dataset.features`` to see which modalities it holds. So the adapter never calls a model's internals: it builds a
``datasets.Dataset`` of the images (and texts) and hands it to mteb's own ``create_dataloader``, which gives the
document batches of an image+text->image ("it2i") task (``{"id", "image"}``) and its query batches
(``{"id", "text", "image", "query"}``), exactly as ``SearchEncoderWrapper`` does for MIEB's CIRR and FashionIQ.

Images travel through the dataset as lossless PPM written here from a plain RGB copy (no file name, no EXIF), so a
wrapper sees the very pixels the benchmark's reader opened (GeneCIS crops included), never a re-read file.

Similarity: cirbench ranks by the cosine of L2-normalised embeddings. That is every shipped multimodal wrapper's own
score (``similarity_fn_name`` COSINE). A dot-product model is accepted only while its gallery embeddings are unit
length (then dot and cosine rank alike; a query's own norm never changes its ranking); any other similarity is
refused in one line. mteb is imported only inside functions: without it this module still imports.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from cirbench.backbones import BackboneIdentity
from cirbench.errors import MethodError, shown
from cirbench.identity import file_sha256
from cirbench.network import hub_access
from cirbench.weight_errors import detail, library_errors

MTEB_MISSING = "mteb is not installed; pip install 'cirbench[embedders]'"
PYTHON_PREFIX = "python:"
HF_SPLIT, HF_SUBSET = "test", "default"  # what mteb passes for MIEB's CIRR / FashionIQ (their only split)
GENERIC_TASK = "cirbench-it2i"  # the it2i metadata used when no mteb task is named: no prompt
UNIT_TOLERANCE = 1e-3  # |norm - 1| a dot-product model's gallery rows may show and still rank as cosine
ENCODE_FIX = "lower -o batch_size if memory ran out; otherwise the model's own encode() failed on these inputs"
OFFLINE_FIX = "pass --allow-download to fetch it once, or fill the Hugging Face cache on a machine that can"


def require_mteb() -> Any:
    """The mteb module, or the one-line ``MethodError`` that says how to install it."""
    try:
        import mteb
    except ImportError as error:
        raise MethodError(MTEB_MISSING) from error
    return mteb


def mteb_version() -> str:
    require_mteb()
    return importlib.metadata.version("mteb")


# --------------------------------------------------------------------------------------------- what is asked for


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``model`` option: an mteb registry (or hub) name with its revision, or a Python factory."""

    name: str
    revision: str | None
    factory: tuple[str, str] | None = None  # (module, attribute) for ``python:pkg.module:factory``

    @property
    def is_python(self) -> bool:
        return self.factory is not None


def parse_model(options: Mapping[str, Any]) -> ModelRef:
    model = str(options.get("model") or "").strip()
    revision = str(options.get("revision") or "").strip() or None
    if not model:
        raise MethodError(
            "method mteb needs -o model=NAME: an mteb model name (e.g. BAAI/BGE-VL-base) or "
            "python:pkg.module:factory (a callable returning an mteb encoder)"
        )
    if not model.startswith(PYTHON_PREFIX):
        return ModelRef(model, revision)
    module, _, attribute = model[len(PYTHON_PREFIX) :].partition(":")
    if not module or not attribute:
        raise MethodError(f"-o model={shown(model)} is not python:pkg.module:factory (module and callable, ':' apart)")
    if revision is not None:
        raise MethodError(
            f"-o revision={shown(revision)} applies to mteb model names; {shown(model)} is identified by its module "
            "file's sha256: drop the revision"
        )
    return ModelRef(model, None, (module, attribute))


def _registry_meta(mteb: Any, name: str) -> Any | None:
    try:
        return mteb.get_model_meta(name, fetch_from_hf=False)
    except (KeyError, ValueError):
        return None


def identify(options: Mapping[str, Any]) -> BackboneIdentity:
    """The encoder's identity without loading it: ``mteb:<name>`` and ``<name>@<revision>|mteb=<version>`` (a Python
    factory: its module file's sha256). The task named by ``task`` is checked here too, before any image."""
    ref = parse_model(options)
    require_mteb()
    task_metadata(str(options.get("task") or ""))
    version = importlib.metadata.version("mteb")
    if ref.is_python:
        return BackboneIdentity(f"mteb:{ref.name}", f"{ref.name}@sha256:{_module_sha256(ref)}|mteb={version}", False)
    return BackboneIdentity(f"mteb:{ref.name}", f"{ref.name}@{resolve_revision(ref)}|mteb={version}", False)


def resolve_revision(ref: ModelRef) -> str | None:
    """The revision a registry name loads (mteb's registered one; a different one asked for is refused), or the one
    a name outside the registry must be given."""
    mteb = require_mteb()
    if ref.is_python:
        return None
    meta = _registry_meta(mteb, ref.name)
    if meta is None:
        if ref.revision is None:
            raise MethodError(
                f"{shown(ref.name)} is not in mteb {mteb_version()}'s model registry: pass -o revision=<commit> so the "
                "result names the weights it used (or check the name with mteb.get_model_meta)"
            )
        return ref.revision
    if ref.revision is not None and ref.revision != meta.revision:
        raise MethodError(
            f"mteb registers {ref.name} at revision {meta.revision}, not -o revision={shown(ref.revision)} (mteb loads "
            "only its registered revision): drop the option or give that one"
        )
    return meta.revision


def _module_sha256(ref: ModelRef) -> str:
    module = ref.factory[0] if ref.factory else ""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as error:
        where = f"module {shown(module)} of -o model={shown(ref.name)}"
        raise MethodError(f"cannot find {where} ({detail(error)})") from error
    if spec is None or not spec.origin or not spec.has_location:
        raise MethodError(f"cannot find module {shown(module)} of -o model={shown(ref.name)}: is it importable here?")
    return file_sha256(spec.origin)


def task_metadata(task: str) -> Any:
    """The ``TaskMetadata`` passed to ``encode``: a named mteb it2i task (its prompts reach the wrapper), or, for an
    empty name, a generic it2i task with no prompt (what cirbench uses for benchmarks mteb does not have)."""
    mteb = require_mteb()
    if not task:
        from mteb.abstasks.task_metadata import TaskMetadata

        return TaskMetadata(
            name=GENERIC_TASK,
            description="cirbench: a composed image retrieval benchmark under its official protocol",
            dataset={"path": "cirbench", "revision": "none"},
            type="Any2AnyRetrieval",
            category="it2i",
            modalities=["image", "text"],
            eval_splits=[HF_SPLIT],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
        )
    try:
        metadata = mteb.get_task(task).metadata
    except (KeyError, ValueError) as error:
        raise MethodError(f"-o task={shown(task)} is not an mteb task ({detail(error)})") from error
    if metadata.category != "it2i":
        raise MethodError(
            f"-o task={shown(task)} is an mteb {metadata.category} task; cirbench encodes image+text queries "
            "against images: name an it2i task (CIRRIT2IRetrieval, FashionIQIT2IRetrieval) or none"
        )
    return metadata


def query_prompt(metadata: Any) -> str | None:
    """The query prompt the task supplies (a wrapper may use it or not: GME does, CLIP does not)."""
    prompt = metadata.prompt
    if isinstance(prompt, Mapping):
        prompt = prompt.get("query")
    return str(prompt) if prompt else None


# --------------------------------------------------------------------------------------------- loading


def load_model(ref: ModelRef, device: str, allow_download: bool) -> Any:
    """The mteb model object: ``mteb.get_model`` (hub offline unless ``allow_download``) or the factory's, called as
    ``factory(device=device)``."""
    mteb = require_mteb()
    fix = OFFLINE_FIX if not allow_download else "check the name, the revision and the network"
    source = f"module {ref.factory[0]}" if ref.factory else "the Hugging Face " + ("hub" if allow_download else "cache")
    with hub_access(allow_download), library_errors(MethodError, f"mteb model {ref.name}", source, fix=fix):
        if ref.factory is not None:
            module, attribute = ref.factory
            model = getattr(importlib.import_module(module), attribute)(device=device)
        else:
            model = mteb.get_model(ref.name, ref.revision, device=device)
    if not callable(getattr(model, "encode", None)):
        raise MethodError(f"{shown(ref.name)} gave {type(model).__name__}, which has no encode(): not an mteb encoder")
    return model


def similarity_name(model: Any) -> str:
    """How the model scores, from its ``mteb_model_meta`` ("cosine" when the meta names none: mteb's fallback)."""
    fn = getattr(getattr(model, "mteb_model_meta", None), "similarity_fn_name", None)
    return "cosine" if fn is None else str(getattr(fn, "value", fn))


def check_similarity(name: str, model_name: str) -> None:
    if name.lower() not in ("cosine", "dot"):
        raise MethodError(
            f"mteb model {model_name} scores with {name} similarity; cirbench ranks by the cosine of L2-normalised "
            "embeddings, which gives that model's own ranking only for cosine or dot product: use another model"
        )


def stated_name_and_revision(model: Any, ref: ModelRef, revision: str | None) -> tuple[str, str | None]:
    """A registry model's name and revision; a factory's model: what its own ``ModelMeta`` states, if anything."""
    if not ref.is_python:
        return ref.name, revision
    meta = getattr(model, "mteb_model_meta", None)
    name, stated = getattr(meta, "name", None), getattr(meta, "revision", None)
    if not isinstance(name, str) or name == "no_model_name/available":
        return ref.name, None
    return name, stated if isinstance(stated, str) and stated != "no_revision_available" else None


# --------------------------------------------------------------------------------------------- batches


def rgb_copy(image: Image.Image) -> Image.Image:
    """A plain RGB image with the same pixels and nothing else (no file name, format or EXIF to act on later)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def keep_list(items: Sequence[Any]) -> list[Any]:
    """Collate: images of any size stay a list (what mteb's own collate does with them)."""
    return list(items)


def _stored(image: Image.Image) -> dict[str, Any]:
    """The bytes a datasets ``Image`` column holds: binary PPM, lossless, no metadata, and ~40x faster to write than
    PNG (what ``datasets`` would pick), which matters on galleries of thousands of images."""
    buffer = io.BytesIO()
    rgb_copy(image).save(buffer, format="PPM")
    return {"bytes": buffer.getvalue(), "path": None}


def build_dataset(images: Sequence[Image.Image], texts: Sequence[str] | None = None) -> Any:
    """The rows an mteb retrieval split holds: ``id``, ``image`` (a datasets ``Image`` column) and, for queries,
    ``text``."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageColumn

    columns: dict[str, list[Any]] = {"id": [str(i) for i in range(len(images))]}
    features: dict[str, Any] = {"id": Value("string")}
    if texts is not None:
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts for {len(images)} images")
        columns["text"], features["text"] = [str(t) for t in texts], Value("string")
    columns["image"], features["image"] = [_stored(image) for image in images], ImageColumn()
    return Dataset.from_dict(columns, features=Features(features))


class MtebEncoder:
    """A ``GalleryEncoder`` over an mteb model: the gallery through the document side of an it2i task, queries
    (``encode_pairs``) through its query side. Embeddings come back as float32 rows, unnormalised."""

    quick_gelu = False
    dtype = torch.float32

    def __init__(
        self, model: Any, identity: BackboneIdentity, metadata: Any, batch_size: int, device: str, ref: ModelRef
    ):
        self.model = model
        self.id, self.weights_id = identity.id, identity.weights_id
        self.metadata = metadata
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.preprocess = rgb_copy
        self.collate = keep_list
        self.name, self.revision = stated_name_and_revision(model, ref, resolve_revision(ref))
        self.similarity = similarity_name(model)
        check_similarity(self.similarity, self.name)
        self._width: int | None = None

    @property
    def model_key(self) -> str:
        return f"{self.id.split(':', 1)[0]}|{self.weights_id}"

    @property
    def image_embed_dim(self) -> int:
        if self._width is None:  # what the model returns, measured on one grey image (a meta's embed_dim may be a list)
            self._width = int(self.encode_image([Image.new("RGB", (64, 64), (127, 127, 127))]).shape[1])
        return self._width

    def _encode(self, dataset: Any, prompt_type: Any) -> torch.Tensor:
        from mteb._create_dataloaders import create_dataloader

        loader = create_dataloader(
            dataset, task_metadata=self.metadata, prompt_type=prompt_type, batch_size=self.batch_size
        )
        with (
            torch.no_grad(),
            library_errors(MethodError, "embeddings", f"mteb model {self.name}", fix=ENCODE_FIX, verb="compute"),
        ):
            out = self.model.encode(
                loader,
                task_metadata=self.metadata,
                hf_split=HF_SPLIT,
                hf_subset=HF_SUBSET,
                prompt_type=prompt_type,
                batch_size=self.batch_size,
                show_progress_bar=False,
            )
        rows = torch.as_tensor(out).float()
        if rows.ndim != 2 or rows.shape[0] != len(dataset):
            raise MethodError(
                f"mteb model {self.name} returned embeddings of shape {tuple(rows.shape)} for {len(dataset)} inputs; "
                "an mteb encoder returns one row per input"
            )
        return rows

    def encode_image(self, batch: Sequence[Image.Image]) -> torch.Tensor:
        """Document embeddings of a batch of PIL images (the it2i corpus side)."""
        from mteb.types import PromptType

        rows = self._encode(build_dataset(batch), PromptType.document)
        if self.similarity.lower() == "dot":
            norms = rows.norm(dim=-1)
            if bool(((norms - 1).abs() > UNIT_TOLERANCE).any()):
                raise MethodError(
                    f"mteb model {self.name} scores with dot product but returns image embeddings of norm "
                    f"{float(norms.min()):.4g}..{float(norms.max()):.4g}, not 1; cirbench ranks by cosine, which would "
                    "not be that model's ranking: use a cosine model"
                )
        return rows

    def encode_pairs(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """Query embeddings of aligned (reference image, text) pairs (the it2i query side)."""
        from mteb.types import PromptType

        return self._encode(build_dataset(images, texts), PromptType.query)


def load(options: Mapping[str, Any], device: str, allow_download: bool) -> MtebEncoder:
    """``OwnEncoder.load``: the model (checked), the task's metadata, wrapped as a ``GalleryEncoder``."""
    identity = identify(options)  # the revision and task checks, before anything is downloaded
    ref = parse_model(options)
    model = load_model(ref, device, allow_download)
    metadata = task_metadata(str(options.get("task") or ""))
    return MtebEncoder(model, identity, metadata, int(options.get("batch_size") or 32), device, ref)
