"""Device JPEG decoding (``--decode``), on the CPU: ``decode_jpeg`` with device "cpu" runs the same code as CUDA.

Known answers: on CPU ``decode_jpeg`` gives PIL's pixels exactly, so without a resize the device path's features
equal the workers' bitwise; with a resize they differ by the resize's rounding only (pixels at most 1 grey level,
cosine >= 0.99 per image and nearest its own workers feature). PNGs in the same gallery take the workers path and
are bitwise the workers' features. The CUDA test (nvJPEG) skips without CUDA.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cirr_support import make_cirr
from PIL import Image
from typer.testing import CliRunner

from cirbench.benchmarks.base import ImageRef
from cirbench.decoding import (
    WORKERS,
    DeviceDecoder,
    TensorPipeline,
    decoder_id,
    device_decodable,
    device_decoder,
    planned_decoder,
    tensor_pipeline,
)
from cirbench.errors import DataError, OptionError
from cirbench.features import encode_images, encode_rows, entry_key, image_list_hash

FIXTURES = Path(__file__).parent / "fixtures"
MIN_COSINE = 0.99  # the tolerance the issue states for device-decoded features


def photo(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth gradients with an inverted box: closer to a photograph than noise."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * (seed + 3)) % 256, (y * 5 + seed * 17) % 256, ((x + y) * 2 + seed * 29) % 256], axis=-1)
    box = (slice(height // 4, height // 2 + seed % 5), slice(width // 3, width - 4))
    base[box] = 255 - base[box]
    return base.astype(np.uint8)


def write(folder: Path, name: str, pixels: np.ndarray, **save) -> ImageRef:
    path = folder / name
    Image.fromarray(pixels).save(path, **save)
    return ImageRef(path.stem, path)


def gallery(folder: Path, jpegs: int = 6, pngs: int = 3, size: tuple[int, int] = (64, 48)) -> list[ImageRef]:
    """JPEGs and PNGs interleaved (order matters: the merged batch must keep it)."""
    refs = []
    for i in range(jpegs + pngs):
        if i % 3 == 2 and pngs:
            refs.append(write(folder, f"img{i:02d}.png", photo(*size, i)))
            pngs -= 1
        else:
            refs.append(write(folder, f"img{i:02d}.jpg", photo(*size, i), quality=90))
    return refs


def nearest_workers_row(workers: torch.Tensor, device: torch.Tensor) -> list[int]:
    """For each device feature, the row of the workers feature it is nearest to (cosine)."""
    return (F.normalize(device, dim=-1) @ F.normalize(workers, dim=-1).T).argmax(dim=1).tolist()


def cpu_decoder(backbone, kind: str = "clip") -> DeviceDecoder:
    decoder, why = device_decoder("device", backbone, kind)
    assert why is None and decoder is not None
    return decoder


# --------------------------------------------------------------------------------------------- features


def test_device_features_within_tolerance_and_pngs_bitwise(tiny_backbone, tmp_path, one_thread):
    refs = gallery(tmp_path)
    workers = encode_images(tiny_backbone, refs, batch_size=4, use_cache=False)
    device = encode_images(tiny_backbone, refs, batch_size=4, use_cache=False, decoder=cpu_decoder(tiny_backbone))
    is_png = [ref.path.suffix == ".png" for ref in refs]
    assert device.decoded == {"device": 6, WORKERS: 3}
    assert workers.decoded == {"device": 0, WORKERS: 9}
    a, b = torch.from_numpy(workers.features), torch.from_numpy(device.features)
    for row, png in enumerate(is_png):
        if png:
            assert torch.equal(a[row], b[row]), row  # the fallback is the workers' path itself
    cosine = F.cosine_similarity(a, b, dim=-1)
    assert float(cosine.min()) >= MIN_COSINE
    assert not torch.equal(a, b)  # the resize rounds differently: close, not equal (hence its own keys)
    # 0.99 alone proves little with a random model (different images here reach cosine 0.995): each device feature
    # must also be nearer its own image's workers feature than any other image's.
    assert nearest_workers_row(a, b) == list(range(len(refs)))


def test_pixel_differences_are_the_resize_rounding_only(tiny_backbone, tmp_path):
    """decode_jpeg on CPU gives PIL's pixels exactly; after preprocessing the largest difference is one grey
    level of the resize, i.e. 1/255/std in normalised units."""
    refs = [r for r in gallery(tmp_path) if r.path.suffix == ".jpg"]
    decoder = cpu_decoder(tiny_backbone)
    decoded = decoder.decode([torch.frombuffer(bytearray(r.path.read_bytes()), dtype=torch.uint8) for r in refs])
    pil = [torch.from_numpy(np.array(Image.open(r.path).convert("RGB"))).permute(2, 0, 1) for r in refs]
    assert max(int((d.int() - p.int()).abs().max()) for d, p in zip(decoded, pil, strict=True)) == 0
    on_device = decoder.preprocess(decoded)
    on_cpu = torch.stack([tiny_backbone.preprocess(Image.open(r.path).convert("RGB")) for r in refs])
    grey_levels = ((on_device - on_cpu) * torch.tensor(decoder.pipeline.std).view(1, 3, 1, 1) * 255).abs()
    assert float(grey_levels.max()) <= 1 + 1e-3


@pytest.mark.parametrize(("size", "kind"), [((32, 32), "clip"), ((48, 32), "clip"), ((40, 16), "targetpad")])
def test_without_a_resize_device_features_are_bitwise(tiny_backbone, tmp_path, one_thread, size, kind):
    """Sizes where the resize is the identity (32 px tiny model; 40x16 padded to 40x32 by targetpad): the crop,
    padding, /255, normalising and batch merging of the device path are the workers' arithmetic exactly."""
    refs = gallery(tmp_path, jpegs=4, pngs=2, size=size)
    workers = encode_images(tiny_backbone, refs, preprocess=kind, batch_size=4, use_cache=False)
    device = encode_images(
        tiny_backbone, refs, preprocess=kind, batch_size=4, use_cache=False, decoder=cpu_decoder(tiny_backbone, kind)
    )
    assert device.decoded == {"device": 4, WORKERS: 2}
    assert np.array_equal(workers.features, device.features)


def test_sharded_rows_equal_one_process_for_the_device_decoder(tiny_backbone, tmp_path, one_thread):
    """What each torchrun rank encodes (``encode_rows`` on batch starts) joins into the one-process features."""
    refs = gallery(tmp_path, jpegs=7, pngs=3)
    decoder = cpu_decoder(tiny_backbone)
    whole = encode_images(tiny_backbone, refs, batch_size=4, use_cache=False, decoder=decoder)
    counts: dict[str, int] = {}
    shards = [encode_rows(tiny_backbone, refs, a, b, batch_size=4, decoder=decoder, counts=counts)
              for a, b in ((0, 4), (4, 8), (8, 10))]  # fmt: skip
    assert np.array_equal(np.concatenate(shards), whole.features)
    assert counts == {"device": 7, WORKERS: 3}


def test_greyscale_cmyk_and_non_jpeg_bytes_take_the_workers_path(tiny_backbone, tmp_path, one_thread):
    pixels = photo(64, 48, 1)
    refs = [
        write(tmp_path, "rgb.jpg", pixels),
        write(tmp_path, "grey.jpg", np.array(Image.fromarray(pixels).convert("L"))),
        ImageRef("cmyk", tmp_path / "cmyk.jpg"),
        ImageRef("png_named_jpg", tmp_path / "png_named.jpg"),
    ]
    Image.fromarray(pixels).convert("CMYK").save(refs[2].path)
    Image.fromarray(pixels).save(refs[3].path, format="PNG")
    workers = encode_images(tiny_backbone, refs, batch_size=4, use_cache=False)
    device = encode_images(tiny_backbone, refs, batch_size=4, use_cache=False, decoder=cpu_decoder(tiny_backbone))
    assert device.decoded == {"device": 1, WORKERS: 3}
    assert np.array_equal(workers.features[1:], device.features[1:])


def test_device_decodable_reads_the_header():
    def jpeg(mode: str = "RGB", **save) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(photo(64, 48, 0)).convert(mode).save(buffer, format="JPEG", **save)
        return buffer.getvalue()

    assert device_decodable(jpeg())
    assert device_decodable(jpeg(progressive=True))
    assert not device_decodable(jpeg("L"))
    assert not device_decodable(jpeg("CMYK"))
    png = io.BytesIO()
    Image.fromarray(photo(8, 8, 0)).save(png, format="PNG")
    assert not device_decodable(png.getvalue())
    assert not device_decodable(jpeg()[:20])  # the header ends before the frame
    assert not device_decodable(b"")


def test_a_corrupt_jpeg_is_the_same_one_line_error(tiny_backbone, tmp_path):
    refs = gallery(tmp_path, jpegs=3, pngs=0)
    data = refs[1].path.read_bytes()
    refs[1].path.write_bytes(data[: len(data) // 2])  # the header is whole: the device decoder gets it and refuses
    assert device_decodable(refs[1].path.read_bytes())
    with pytest.raises(DataError) as workers:
        encode_images(tiny_backbone, refs, batch_size=4, use_cache=False)
    with pytest.raises(DataError) as device:
        encode_images(tiny_backbone, refs, batch_size=4, use_cache=False, decoder=cpu_decoder(tiny_backbone))
    assert str(device.value) == str(workers.value)
    assert str(refs[1].path) in str(device.value) and "\n" not in str(device.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: nvJPEG decodes only there")
def test_nvjpeg_on_cuda_against_the_workers(tmp_path):
    """The one path a CPU cannot run: decode_jpeg on CUDA (nvJPEG, batched), then the tensor preprocessing there.
    Known answers: the decoder is named decode_jpeg:cuda; JPEGs decode on the GPU and PNGs on the workers, in
    order; PNG rows are bitwise the workers'; each JPEG row is within cosine 0.99 of its workers feature and
    nearest it; a truncated JPEG is the workers' one-line error (whether nvJPEG refuses it is what this checks)."""
    from cirbench.backbones import load_backbone

    backbone = load_backbone("cirbench-tiny:random", device="cuda")
    decoder = cpu_decoder(backbone)
    assert decoder.id == "decode_jpeg:cuda"
    refs = gallery(tmp_path)
    jpegs = [r for r in refs if r.path.suffix == ".jpg"]
    decoded = decoder.decode([torch.frombuffer(bytearray(r.path.read_bytes()), dtype=torch.uint8) for r in jpegs])
    pil = [torch.from_numpy(np.array(Image.open(r.path).convert("RGB"))).permute(2, 0, 1) for r in jpegs]
    assert [(t.device.type, tuple(t.shape)) for t in decoded] == [("cuda", tuple(p.shape)) for p in pil]
    workers = encode_images(backbone, refs, batch_size=4, use_cache=False)
    device = encode_images(backbone, refs, batch_size=4, use_cache=False, decoder=decoder)
    assert device.decoded == {"device": 6, WORKERS: 3}
    a, b = torch.from_numpy(workers.features), torch.from_numpy(device.features)
    for row, ref in enumerate(refs):
        if ref.path.suffix == ".png":
            assert torch.equal(a[row], b[row]), row
    assert float(F.cosine_similarity(a, b, dim=-1).min()) >= MIN_COSINE
    assert nearest_workers_row(a, b) == list(range(len(refs)))
    data = refs[1].path.read_bytes()
    refs[1].path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as on_cpu:
        encode_images(backbone, refs, batch_size=4, use_cache=False)
    with pytest.raises(DataError) as on_gpu:
        encode_images(backbone, refs, batch_size=4, use_cache=False, decoder=decoder)
    assert str(on_gpu.value) == str(on_cpu.value)


# --------------------------------------------------------------------------------------------- keys and cache


def test_the_default_cache_key_is_unchanged_and_decoders_differ(tiny_backbone, tmp_path):
    refs = gallery(tmp_path, jpegs=2, pngs=1)
    old = [tiny_backbone.model_key, "clip", image_list_hash(refs), "ids"]  # how keys were made before decoders
    before = hashlib.sha256(json.dumps(old).encode()).hexdigest()[:20]
    assert entry_key(tiny_backbone, "clip", refs, images_id="ids") == before
    assert entry_key(tiny_backbone, "clip", refs, images_id="ids", decoder=WORKERS) == before
    keys = {entry_key(tiny_backbone, "clip", refs, images_id="ids", decoder=decoder_id(d)) for d in ("cpu", "cuda")}
    assert len(keys | {before}) == 3


def test_cache_entries_are_kept_apart_and_remember_their_counts(tiny_backbone, tmp_path, one_thread):
    from cirbench.paths import cache_root

    refs = gallery(tmp_path, jpegs=4, pngs=2)
    decoder = cpu_decoder(tiny_backbone)
    workers = encode_images(tiny_backbone, refs, batch_size=4)
    device = encode_images(tiny_backbone, refs, batch_size=4, decoder=decoder)
    assert not device.from_cache  # not the workers' entry
    again = encode_images(tiny_backbone, refs, batch_size=4, decoder=decoder)
    assert again.from_cache and again.decoded == {"device": 4, WORKERS: 2}
    assert np.array_equal(again.features, device.features)
    assert encode_images(tiny_backbone, refs, batch_size=4).decoded == workers.decoded == {"device": 0, WORKERS: 6}
    manifests = [json.loads(p.read_text()) for p in (cache_root() / "features").glob("*/manifest.json")]
    assert sorted(m.get("decoder", WORKERS) for m in manifests) == ["decode_jpeg:cpu", WORKERS]
    assert not list((cache_root() / "features").glob("*/chunk_*"))


def test_a_resumed_device_entry_counts_every_chunk(tiny_backbone, tmp_path, monkeypatch, one_thread):
    """Chunks written before an interruption keep their counts beside them; a chunk whose counts are gone is
    encoded again, so the finished entry's counts cover every image exactly once."""
    import cirbench.features as features
    from cirbench.paths import cache_root

    refs = gallery(tmp_path, jpegs=6, pngs=3)  # chunks of 4: 4 + 4 + 1 images
    decoder = cpu_decoder(tiny_backbone)
    monkeypatch.setattr(features, "CHUNK", 4)
    finish = features._finish
    monkeypatch.setattr(features, "_finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        encode_images(tiny_backbone, refs, batch_size=2, decoder=decoder)
    (folder,) = (cache_root() / "features").iterdir()
    assert sorted(p.name for p in folder.glob("chunk_*")) == [
        f"chunk_{i:06d}.{ext}" for i in range(3) for ext in ("json", "npy")
    ]
    (folder / "chunk_000001.json").unlink()  # as if killed between the two writes of a later run
    monkeypatch.setattr(features, "_finish", finish)
    resumed = encode_images(tiny_backbone, refs, batch_size=2, decoder=decoder)
    whole = encode_images(tiny_backbone, refs, batch_size=2, decoder=decoder, use_cache=False)
    assert resumed.decoded == whole.decoded == {"device": 6, WORKERS: 3}
    assert np.array_equal(resumed.features, whole.features)
    assert json.loads((folder / "manifest.json").read_text())["images_decoded"] == {"device": 6, WORKERS: 3}


# --------------------------------------------------------------------------------------------- what qualifies


def test_tensor_pipeline_of_open_clip_and_other_transforms(tiny_backbone):
    from torchvision import transforms as T

    pipeline = tensor_pipeline(tiny_backbone.preprocess)
    assert pipeline == TensorPipeline(32, (32, 32), pipeline.mean, pipeline.std)
    assert pipeline.mean == (0.48145466, 0.4578275, 0.40821073)
    squash = T.Compose([T.Resize((32, 32), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])
    assert "shortest side" in tensor_pipeline(squash)
    opaque = T.Compose([T.Resize(32), T.CenterCrop(32), T.Lambda(lambda im: im), T.ToTensor(), T.Normalize(0, 1)])
    assert "Resize" in tensor_pipeline(opaque)  # bilinear
    bicubic = T.InterpolationMode.BICUBIC
    lam = T.Compose([T.Resize(32, bicubic), T.CenterCrop(32), T.Lambda(lambda im: im), T.ToTensor(), T.Normalize(0, 1)])
    assert "Lambda" in tensor_pipeline(lam)
    assert "Compose" in tensor_pipeline(lambda image: image)


def test_auto_and_device_before_loading():
    from cirbench.benchmarks import get_benchmark

    cirr, genecis = get_benchmark("cirr"), get_benchmark("genecis")
    assert planned_decoder("auto", "cpu", cirr) == (None, "the device is cpu, not CUDA")
    assert planned_decoder("workers", "cuda", cirr) == (None, None)
    assert planned_decoder("auto", "cuda:1", cirr) == ("decode_jpeg:cuda", None)
    assert planned_decoder("device", "cpu", cirr) == ("decode_jpeg:cpu", None)
    assert planned_decoder("auto", "cuda", genecis)[0] is None  # its reader crops
    with pytest.raises(OptionError, match="genecis opens its images with its own reader"):
        planned_decoder("device", "cuda", genecis)
    with pytest.raises(OptionError, match="--decode 'gpu'"):
        planned_decoder("gpu", "cuda", cirr)
    # decode_jpeg decodes on the CPU for any device but cuda: never keyed as "decode_jpeg:mps"
    for other in ("mps", "xpu:0"):
        with pytest.raises(OptionError, match=f"--decode device: the device is {other}, .*use --decode workers"):
            planned_decoder("device", other, cirr)
        assert planned_decoder("auto", other, cirr) == (None, f"the device is {other}, not CUDA")


def test_a_backbone_without_a_tensor_pipeline():
    from cirbench.backbones import load_backbone

    shapes = load_backbone("shapes-clip:v2")  # its RGB step is a Lambda, which cannot be checked
    decoder, why = device_decoder("auto", shapes, "clip")
    assert decoder is None and "Lambda" in why
    with pytest.raises(OptionError, match="--decode device: shapes-clip:v2: .*use --decode workers"):
        device_decoder("device", shapes, "clip")


# --------------------------------------------------------------------------------------------- evaluation, CLI


def make_split(root: Path) -> Path:
    """A 12-image CIRR val split (SEARLE layout) with 8 JPEGs and 4 PNGs, 4 queries."""
    return make_cirr(root, lambda i: (Image.fromarray(photo(64, 48, i)), ".png" if i % 3 == 1 else ".jpg"))


def test_evaluate_records_the_decoder_and_keys_it(tmp_path, one_thread):
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    root = make_split(tmp_path / "CIRR")
    spec = resolve(RunRequest("image+text", "cirr", "cirbench-tiny:random", root=root))
    results = tmp_path / "results"
    default = evaluate(spec, EvalSettings(results_dir=results))  # workers: what every caller but the CLI gets
    auto = evaluate(spec, EvalSettings(results_dir=results, decode="auto"))  # on CPU: the workers, same key
    assert auto.reused and auto.path == default.path
    assert "decode" not in default.result.key_fields
    assert default.result.run_settings["decode"] == {"mode": "workers", "decoder": WORKERS,
                                                     "images": {"device": 0, WORKERS: 12}}  # fmt: skip
    device = evaluate(spec, EvalSettings(results_dir=results, decode="device"))
    assert not device.reused and device.result.run_key != default.result.run_key
    assert device.result.key_fields == {**default.result.key_fields, "decode": "decode_jpeg:cpu"}
    assert device.result.run_settings["decode"] == {"mode": "device", "decoder": "decode_jpeg:cpu",
                                                    "images": {"device": 8, WORKERS: 4}}  # fmt: skip
    again = evaluate(spec, EvalSettings(results_dir=results, decode="device"))
    assert again.reused and again.path == device.path
    workers = evaluate(spec, EvalSettings(results_dir=results, decode="workers"))
    assert workers.reused and workers.path == default.path  # never the device's result
    assert set(device.result.metrics) == set(default.result.metrics)
    from cirbench.leaderboard.entries import entry_from_result

    assert entry_from_result(device.result).protocol == ("JPEGs decoded by decode_jpeg:cpu",)
    assert entry_from_result(default.result).protocol == ()  # the leaderboard marks device-decoded rows only


def test_leaderboard_marks_device_rows_only_when_the_device_decoded_and_never_averages_them_as_seeds(
    tmp_path, one_thread
):
    """A device-keyed run whose gallery held no JPEG (Pic2Word's PNG layouts) has the workers' features bitwise: no
    mark. Two training seeds, one per decoder, stay two rows; two seeds on one decoder become one."""
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
    from cirbench.leaderboard import collect_entries
    from cirbench.leaderboard.entries import entry_from_result
    from cirbench.results import result_path, save_result

    root = make_split(tmp_path / "CIRR")
    spec = resolve(RunRequest("image-only", "cirr", "cirbench-tiny:random", root=root))
    workers = evaluate(spec, EvalSettings(results_dir=None)).result
    device = evaluate(spec, EvalSettings(results_dir=None, decode="device")).result
    assert entry_from_result(device).protocol == ("JPEGs decoded by decode_jpeg:cpu",)
    no_jpeg = {**device.run_settings["decode"], "images": {"device": 0, WORKERS: 12}}
    png_only = device.model_copy(update={"run_settings": {**device.run_settings, "decode": no_jpeg}})
    assert entry_from_result(png_only).protocol == ()

    def seeded(result, seed: int, results: Path) -> None:
        meta = {"config": {"seed": seed}}
        result = result.model_copy(update={"run_key": f"{result.run_key[:10]}s{seed}"}, deep=True)
        result.method.train_meta = meta
        bench = result.benchmark
        save_result(result, result_path(results, bench.name, bench.split, "m", "b", result.run_key), None)

    mixed, same = tmp_path / "mixed", tmp_path / "same"
    seeded(workers, 0, mixed), seeded(device, 1, mixed)
    seeded(workers, 0, same), seeded(workers, 1, same)
    assert [e.seeds for e in collect_entries(same, None)] == [(0, 1)]
    rows = collect_entries(mixed, None)
    assert sorted((e.seed, e.protocol) for e in rows) == [(0, ()), (1, ("JPEGs decoded by decode_jpeg:cpu",))]


def test_auto_falls_back_after_loading_to_the_workers_key(tmp_path, monkeypatch, one_thread):
    """``auto`` on CUDA plans the device before loading; a backbone without a tensor pipeline (shapes-clip) then
    runs on the workers under the workers' key, with the reason recorded. CUDA is stood in for by the plan."""
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, evaluator, resolve

    root = make_split(tmp_path / "CIRR")
    spec = resolve(RunRequest("image-only", "cirr", "shapes-clip:v2", root=root))
    results = tmp_path / "results"
    workers = evaluate(spec, EvalSettings(results_dir=results))
    monkeypatch.setattr(evaluator, "planned_decoder", lambda mode, device, bench: (decoder_id("cpu"), None))
    auto = evaluate(spec, EvalSettings(results_dir=results, decode="auto", overwrite=True))
    assert auto.path == workers.path and auto.result.run_key == workers.result.run_key
    record = auto.result.run_settings["decode"]
    assert record["decoder"] == WORKERS and "Lambda" in record["why_workers"]
    assert auto.result.metrics == workers.result.metrics
    reused = evaluate(spec, EvalSettings(results_dir=results, decode="auto"))
    assert reused.reused and reused.path == workers.path


def _cli(*args: str) -> tuple[int, str]:
    import cirbench.cli  # noqa: F401 - registers the commands
    from cirbench.commands import app

    out = CliRunner().invoke(app, list(args))
    return out.exit_code, out.output


def test_cli_decode_errors_are_one_line(tmp_path):
    root = make_split(tmp_path / "CIRR")
    base = ["eval", "-m", "image-only", "--benchmark", "cirr", "--root", str(root), "--results-dir", str(tmp_path)]
    base.append("--json")  # no status line before the models load: the error is the only line
    code, out = _cli(*base, "-b", "cirbench-tiny:random", "--decode", "gpu")
    assert code == 2 and out.strip().count("\n") == 0 and "--decode 'gpu'" in out
    code, out = _cli(*base, "-b", "shapes-clip:v2", "--decode", "device", "--device", "cpu")
    assert code == 2 and out.strip().count("\n") == 0 and "use --decode workers" in out
    genecis = ["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "genecis"]
    code, out = _cli(*genecis, "--root", str(FIXTURES / "genecis"), "--decode", "device")
    assert code == 2 and out.strip().count("\n") == 0 and "genecis opens its images with its own reader" in out


def test_cli_device_decoding_on_cpu(tmp_path, one_thread):
    root = make_split(tmp_path / "CIRR")
    base = ["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", str(root)]
    code, out = _cli(*base, "--results-dir", str(tmp_path / "r"), "--decode", "device", "--device", "cpu", "--json")
    assert code == 0, out
    record = json.loads(out[out.index("[") :])[0]
    assert record["run_settings"]["decode"]["images"] == {"device": 8, WORKERS: 4}
    assert record["key_fields"]["decode"] == "decode_jpeg:cpu"
    code, out = _cli(*base, "--results-dir", str(tmp_path / "r"), "--json")  # the default: the official PIL path
    assert code == 0, out
    default = json.loads(out[out.index("[") :])[0]
    assert default["run_settings"]["decode"]["mode"] == WORKERS and "decode" not in default["key_fields"]
    assert default["run_settings"]["decode"]["images"] == {"device": 0, WORKERS: 12}


@pytest.mark.slow
def test_torchrun_ranks_decode_as_one_process(tmp_path, one_thread):
    """`torchrun --nproc_per_node 2 -m cirbench eval --decode device` (gloo, CPU): every rank decodes its shard on
    the device, and the key, counts, rankings and cached features equal one process's."""
    import gzip
    import os
    import subprocess
    import sys

    from cirbench.backbones import load_backbone
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    root = make_split(tmp_path / "CIRR")
    spec = resolve(RunRequest("image-only", "cirr", "cirbench-tiny:random", root=root))
    single = evaluate(spec, EvalSettings(results_dir=tmp_path / "one", batch_size=4, use_cache=False, decode="device"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    command += ["cirbench", "eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr"]
    command += ["--root", str(root), "--results-dir", str(tmp_path / "two"), "--batch-size", "4"]
    command += ["--decode", "device", "--device", "cpu"]  # 3 batches of 4: rank 0 gets 2, rank 1 gets 1
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (tmp_path / "two").rglob("*--*.json")
    two = json.loads(path.read_text())
    assert two["run_key"] == single.result.run_key and two["metrics"] == single.result.metrics
    assert two["run_settings"]["world_size"] == 2
    assert two["run_settings"]["decode"] == single.result.run_settings["decode"]
    assert two["run_settings"]["decode"]["images"] == {"device": 8, WORKERS: 4}
    rankings = gzip.decompress(path.with_name(path.name[: -len(".json")] + ".rankings.json.gz").read_bytes())
    assert json.loads(rankings)["top"] == single.rankings.top
    (entry,) = (Path(os.environ["CIRBENCH_CACHE"]) / "features").iterdir()
    assert json.loads((entry / "manifest.json").read_text())["images_decoded"] == {"device": 8, WORKERS: 4}
    backbone = load_backbone("cirbench-tiny:random")
    data = spec.benchmark.load(root, "val", {})  # the entry's rows are the split's images in order
    mine = encode_images(backbone, list(data.images.values()), batch_size=4, use_cache=False,
                         decoder=cpu_decoder(backbone))  # fmt: skip
    assert np.array_equal(np.load(entry / "features.npy"), mine.features)
