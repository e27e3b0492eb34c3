"""Batched JPEG decoding on the evaluation device (``--decode device``), beside the CPU worker path.

Why: encoding a JPEG gallery is bound by PIL decoding in the DataLoader workers (one H100: 146.6 images/s against
218.7 for the bare ViT-L/14 forward). Here the workers only read each file's bytes; ``torchvision.io.decode_jpeg``
decodes a whole batch on the device (nvJPEG on CUDA, libjpeg-turbo on CPU) and the backbone's preprocessing runs
there on uint8 tensors: resize of the shortest side (bicubic, antialiased), centre crop, /255, normalise, with
SEARLE's ``targetpad`` (zero padding) first when the method asks for it.

How close: crop, scaling, normalising and padding are the same arithmetic as the PIL path (bitwise equal when no
resize happens, ``tests/test_decoding.py``). Two steps round differently: the tensor resize against PIL's
fixed-point one (at most 1 grey level here), and nvJPEG against libjpeg-turbo (on CPU ``decode_jpeg`` gives PIL's
pixels exactly). So device-decoded features are not the workers' features bitwise: every image's cosine to its
workers feature is >= 0.99 and its nearest workers feature is its own (tested on CPU; on a GPU not yet run, what
``perf/gpu_check.sh`` checks), and the decoder enters the feature-cache key and the run key
(``evaluation.evaluator``).

Only what the tensor path reproduces takes it: the benchmark's plain RGB opener (not GeneCIS crops or COCO
regions), a backbone whose preprocessing is open_clip's Resize / CenterCrop / RGB / ToTensor / Normalize, and
8-bit 3-component (YCbCr) baseline or progressive JPEGs found by their header bytes. Every other file (PNG,
greyscale or CMYK JPEG, one the device decoder refuses) goes through the CPU path in the same batch, so order,
batches and counts are unchanged; a corrupt file is the CPU path's one-line ``DataError`` naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import Benchmark, ImageRef
from cirbench.errors import DataError, LimitError, OptionError
from cirbench.image_limits import over_budget
from cirbench.images import open_rgb
from cirbench.methods.preprocessing import PREPROCESS_KINDS, TARGET_RATIO, TargetPad

DECODE_MODES = ("auto", "workers", "device")
WORKERS = "workers"  # the CPU path: PIL in DataLoader workers (the feature-cache and run keys leave it out)
_SOF_OK = {0xC0, 0xC1, 0xC2}  # baseline, extended sequential, progressive (Huffman)
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic
_DEPRECATED = "The image decoding and encoding capabilities of TorchVision are deprecated"


def parse_decode(value: str) -> str:
    """A ``--decode`` value, checked (one line naming it otherwise)."""
    if value not in DECODE_MODES:
        raise OptionError(f"--decode {value!r}: choose auto (the device where it applies), workers or device")
    return value


def decoder_id(device: str | torch.device) -> str:
    """The device decoder's name in keys and results: nvJPEG on CUDA and libjpeg-turbo on CPU differ in pixels."""
    return f"decode_jpeg:{str(device).split(':')[0]}"


def unreadable(problem: str) -> DataError | LimitError:
    """The one-line error of an image neither path can decode (the same whichever path found it). An image over the
    pixel budget (refused by ``image_limits`` in the workers' opener) is a ``LimitError``."""
    if "LimitError: " in problem:
        return LimitError(f"{problem}; `cirbench data check` lists every image over the budget")
    return DataError(
        f"{problem}; run `cirbench data check --deep` to list every unreadable image, then fix or remove "
        "them (--skip-missing leaves out missing and non-image files)"
    )


# --------------------------------------------------------------------------------------------- what qualifies
@dataclass(frozen=True)
class TensorPipeline:
    """The backbone's eval preprocessing as tensor operations (see ``tensor_pipeline``)."""

    resize: int  # shortest side, bicubic, antialiased
    crop: tuple[int, int]  # centre crop (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad_ratio: float | None = None  # SEARLE's TargetPad before the resize


def _shortest_side(size: Any) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, (list, tuple)) and len(size) == 1:
        return int(size[0])
    return None


def _to_rgb(step: Any) -> bool:
    """open_clip's RGB conversion (a no-op for the RGB images both paths decode)."""
    from open_clip import transform as oc

    return (type(step) is oc.MaybeConvertMode and step.mode == "RGB") or step is getattr(oc, "_convert_to_rgb", 0)


def tensor_pipeline(transform: Any) -> TensorPipeline | str:
    """The pipeline when ``transform`` is exactly Resize(shortest side, bicubic) -> CenterCrop -> [RGB] ->
    ToTensor -> Normalize (open_clip's eval transform), else why not. Steps are recognised by type and
    attributes (exact types: a subclass may behave otherwise), never by their text, so an opaque step (a
    ``Lambda``) disqualifies the backbone. Resize's ``antialias`` is not checked: on PIL images (the workers'
    path) torchvision always antialiases, as the tensor path does."""
    from open_clip import transform as oc
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", None) or [])
    if not steps:
        return f"its preprocessing {type(transform).__name__} is not a torchvision Compose"
    resize = crop = None
    mean = std = None
    seen: list[str] = []
    for step in steps:
        if type(step) is T.Resize and not seen:
            side = _shortest_side(step.size)
            if side is None or step.interpolation != T.InterpolationMode.BICUBIC or step.max_size is not None:
                return f"its Resize {step!r} is not a bicubic resize of the shortest side"
            resize, kind = side, "resize"
        elif type(step) is T.CenterCrop and seen == ["resize"]:
            crop, kind = (int(step.size[0]), int(step.size[1])), "crop"
        elif _to_rgb(step):
            if "tensor" in seen:
                return "it converts to RGB after ToTensor"
            continue
        elif type(step) in (T.ToTensor, oc.MaybeToTensor) and seen == ["resize", "crop"]:
            kind = "tensor"
        elif type(step) is T.Normalize and seen == ["resize", "crop", "tensor"]:
            mean, std, kind = tuple(map(float, step.mean)), tuple(map(float, step.std)), "normalize"
        else:
            after = ", ".join(seen) or "nothing"
            return f"its preprocessing step {type(step).__name__} (after {after}) has no tensor form here"
        seen.append(kind)
    if seen != ["resize", "crop", "tensor", "normalize"]:
        return f"its preprocessing has only {', '.join(seen)} of resize, crop, ToTensor, Normalize"
    return TensorPipeline(resize, crop, mean, std)


def opener_problem(benchmark: Benchmark) -> str | None:
    """Why a benchmark's images cannot take the device path (its own reader crops or masks), or None."""
    if benchmark.image_reader_id != "rgb" or benchmark.open_image is not open_rgb:
        return f"{benchmark.name} opens its images with its own reader ({benchmark.image_reader_id})"
    return None


def planned_decoder(mode: str, device: str | torch.device, benchmark: Benchmark) -> tuple[str | None, str | None]:
    """Before any model is loaded: (the device decoder this run will use, by its ``decoder_id``, or None for the
    workers; why ``auto`` chose the workers). ``auto`` picks the device on CUDA; the backbone is checked once
    loaded (``device_decoder``)."""
    mode = parse_decode(mode)
    problem = opener_problem(benchmark)
    kind = str(device).split(":")[0]
    if mode == "device" and kind not in ("cpu", "cuda"):  # decode_jpeg decodes anywhere else on the CPU, unsaid
        raise OptionError(
            f"--decode device: the device is {device}, where decode_jpeg does not decode (only cuda or cpu); "
            "use --decode workers (or auto)"
        )
    if mode == "device" and problem:
        raise OptionError(f"--decode device: {problem}, which device decoding does not reproduce; use --decode auto")
    if mode == "device" or (mode == "auto" and str(device).startswith("cuda") and problem is None):
        return decoder_id(device), None
    if mode == "auto":
        return None, problem or f"the device is {device}, not CUDA"
    return None, None


# --------------------------------------------------------------------------------------------- the decoder
@dataclass(frozen=True)
class DeviceDecoder:
    """Decodes JPEG bytes on ``device`` in batches and preprocesses them there as ``pipeline`` says."""

    device: torch.device
    pipeline: TensorPipeline

    @property
    def id(self) -> str:
        return decoder_id(self.device)

    def decode(self, data: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """RGB uint8 images (3, H, W) on the device; None where the decoder refuses a file (a second pass decodes
        the batch one by one to find which)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        if not data:
            return []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_DEPRECATED)
            try:
                return list(decode_jpeg(list(data), mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                out: list[torch.Tensor | None] = []
                for one in data:
                    try:
                        out.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError:
                        out.append(None)
                return out

    def preprocess(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised pixels (N, 3, crop) on the device: [pad], resize, crop per image, then /255 and normalise
        over the batch (ToTensor's and Normalize's arithmetic)."""
        from torchvision.transforms.v2 import functional as TF

        p = self.pipeline
        crops = []
        for image in images:
            if p.pad_ratio is not None:
                hp, vp = TargetPad(p.pad_ratio).padding(int(image.shape[-1]), int(image.shape[-2]))
                if hp or vp:
                    image = TF.pad(image, [hp, vp, hp, vp], fill=0)
            image = TF.resize(image, [p.resize], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
            crops.append(TF.center_crop(image, list(p.crop)))
        mean = torch.tensor(p.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(p.std, device=self.device).view(1, -1, 1, 1)
        return torch.stack(crops).float().div(255).sub(mean).div(std)


def device_decoder(mode: str, backbone: Backbone, preprocess: str) -> tuple[DeviceDecoder | None, str | None]:
    """Once the backbone is loaded: the decoder on its device, or (None, why not). ``device`` mode refuses a
    backbone whose preprocessing has no tensor form here, in one line; ``auto`` falls back to the workers."""
    pipeline = tensor_pipeline(backbone.preprocess)
    if preprocess not in PREPROCESS_KINDS:
        pipeline = f"preprocessing {preprocess!r} is unknown"
    if isinstance(pipeline, str):
        why = f"{backbone.id}: {pipeline}"
        if mode == "device":
            raise OptionError(f"--decode device: {why}; use --decode workers (or auto) for this backbone")
        return None, why
    if preprocess == "targetpad":
        pipeline = TensorPipeline(pipeline.resize, pipeline.crop, pipeline.mean, pipeline.std, TARGET_RATIO)
    return DeviceDecoder(backbone.device, pipeline), None


# --------------------------------------------------------------------------------------------- reading, encoding
def device_decodable(data: bytes) -> bool:
    """True for an 8-bit, 3-component baseline or progressive JPEG (its header walked up to the frame marker)
    within the pixel budget; anything else (PNG, greyscale, CMYK, 12-bit, arithmetic coding, a damaged header, a
    size over the budget) takes the CPU path, whose opener refuses the last with the same line as ``--decode
    workers`` (``decode_jpeg`` has no pixel limit of its own)."""
    if data[:3] != b"\xff\xd8\xff":
        return False
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _SOF_OK:
            if i + 10 > len(data) or data[i + 4] != 8 or data[i + 9] != 3:
                return False
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return over_budget(width, height) is None
        if marker in _SOF_OTHER or marker in (0xDA, 0xD9):  # another coding, or scan data before any frame
            return False
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return False


class _BytesOrPixels(torch.utils.data.Dataset):
    """Per image: (True, its bytes) when the device decodes it, else (False, CPU pixels, or the reason) from the
    workers' own dataset, so the fallback is the CPU path itself."""

    def __init__(self, refs: Sequence[ImageRef], cpu: torch.utils.data.Dataset):
        self.refs, self.cpu = refs, cpu

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[bool, torch.Tensor, str]:
        path = self.refs[index].path
        try:
            data = path.read_bytes() if path is not None else b""
        except OSError:
            data = b""
        if device_decodable(data):
            return True, torch.frombuffer(bytearray(data), dtype=torch.uint8), ""
        return (False, *self.cpu[index])


def _as_list(batch: list) -> list:
    return batch


def encode_chunk_on_device(
    backbone: Backbone,
    refs: Sequence[ImageRef],
    cpu: torch.utils.data.Dataset,
    decoder: DeviceDecoder,
    batch_size: int,
    num_workers: int,
    counts: dict[str, int],
) -> Any:
    """Features of ``refs`` in the workers path's batches: JPEGs decoded and preprocessed on the device, every
    other image from ``cpu`` (the workers' dataset), merged in order; ``counts`` adds how many took each path."""
    import numpy as np

    loader = torch.utils.data.DataLoader(
        _BytesOrPixels(refs, cpu), batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=_as_list
    )
    out, done = [], 0
    for batch in loader:
        jpeg = [i for i, (is_jpeg, _, _) in enumerate(batch) if is_jpeg]
        decoded = dict(zip(jpeg, decoder.decode([batch[i][1] for i in jpeg]), strict=True))
        cpu_rows: dict[int, torch.Tensor] = {}
        for i, (is_jpeg, payload, problem) in enumerate(batch):
            if is_jpeg and decoded[i] is None:  # refused on the device: the CPU path decides
                payload, problem = cpu[done + i]
            if problem:
                raise unreadable(problem)
            if not is_jpeg or decoded[i] is None:
                cpu_rows[i] = payload
        on_device = [i for i in jpeg if decoded[i] is not None]
        pixels = torch.empty((len(batch), 3, *decoder.pipeline.crop), dtype=torch.float32, device=decoder.device)
        if on_device:
            pixels[on_device] = decoder.preprocess([decoded[i] for i in on_device])
        if cpu_rows:
            pixels[list(cpu_rows)] = torch.stack(list(cpu_rows.values())).to(decoder.device)
        counts["device"] = counts.get("device", 0) + len(on_device)
        counts[WORKERS] = counts.get(WORKERS, 0) + len(cpu_rows)
        out.append(backbone.encode_image(pixels).cpu().numpy().astype(np.float32))
        done += len(batch)
    return np.concatenate(out) if out else np.zeros((0, backbone.image_embed_dim), np.float32)
