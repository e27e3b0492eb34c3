"""Issue 19, guarantees 4 (containment), 5 (one pixel budget for every decode path) and 10 (cheap checks find cheap
faults): known answers through the CLI, plus property-based tests over the annotation and list loaders.

Property: whatever a record holds (any JSON type in any field, a duplicated id, a path with ``..``, an absolute path,
a NUL, a symlink out of the root), loading either gives exactly the clean split (for spellings of the same file) or
a split whose every image resolves inside its root, or it is refused with a one-line ``UserError``; never another
exception.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import struct
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from cirr_support import make_cirr
from fault_support import one_line_error, run
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from cirbench.benchmarks import get_benchmark
from cirbench.errors import ContainmentError, LimitError, UserError
from cirbench.evaluation import prepare
from cirbench.image_limits import PIXEL_BUDGET, TRUNCATED
from cirbench.images import check_images

FIXTURES = Path(__file__).parent / "fixtures"
FIX = "copy the file into the root, or point the root at the folder that holds it"
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def eval_cirr(root: Path, results: Path, *extra):
    args = ["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", root]
    return run(*args, "--results-dir", results, "--device", "cpu", "--json", *extra)  # --json: no status lines


# --------------------------------------------------------------------------------------------- image files


def jpeg_bytes(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    picture = Image.new("RGB", (width, height), ((37 * seed) % 256, 90, 200))
    for x in range(0, width, 3):
        picture.putpixel((x, (x * 7 + seed) % height), (255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header (SOF0) declares ``width`` x ``height``."""
    data = bytearray(jpeg_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose IHDR declares ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_split(root: Path) -> Path:
    """The tiny CIRR split with JPEG images (the device decoder's kind)."""

    def picture(i: int):
        return Image.open(io.BytesIO(jpeg_bytes(seed=i))), ".jpg"

    return make_cirr(root, picture)


# --------------------------------------------------------------------------------------------- 4. containment


def test_a_symlink_in_the_root_that_points_outside_is_refused_naming_the_record(tmp_path, cirr_split):
    image = cirr_split / "dev" / "dev-0-0-img0.png"
    outside = tmp_path / "elsewhere" / "x.png"
    outside.parent.mkdir()
    shutil.move(image, outside)
    image.symlink_to(outside)
    fragments = ("split.rc2.val.json", "dev-0-0-img0", "resolves (symlinks followed) to", str(outside.resolve()))
    fragments += ("outside the data root", FIX)
    with pytest.raises(ContainmentError) as refused:
        get_benchmark("cirr").load(cirr_split, "val")
    assert all(f in str(refused.value) for f in fragments) and "\n" not in str(refused.value)
    check = run("data", "check", "--benchmark", "cirr", "--root", cirr_split, "--json")
    assert check.exit_code == 1 and all(f in json.loads(check.output)["problems"][0] for f in fragments)
    one_line_error(eval_cirr(cirr_split, tmp_path / "r"), *fragments)
    # A symlinked folder inside the root escapes the same way; a symlink to a file inside the root is followed.
    image.unlink()
    shutil.move(cirr_split / "dev", tmp_path / "real_dev")
    (cirr_split / "dev").symlink_to(tmp_path / "real_dev")
    with pytest.raises(ContainmentError, match="outside the data root"):
        get_benchmark("cirr").load(cirr_split, "val")
    (cirr_split / "dev").unlink()
    shutil.move(tmp_path / "real_dev", cirr_split / "dev")
    (cirr_split / "store").mkdir()
    shutil.move(outside, cirr_split / "store" / "x.png")
    image.symlink_to(cirr_split / "store" / "x.png")
    assert len(get_benchmark("cirr").load(cirr_split, "val").images) == 12


def test_a_root_that_is_itself_a_symlink_gives_the_clean_result(tmp_path, cirr_split):
    link = tmp_path / "link"
    link.symlink_to(cirr_split)
    clean, linked = eval_cirr(cirr_split, tmp_path / "a", "--json"), eval_cirr(link, tmp_path / "b", "--json")
    assert clean.exit_code == 0 and linked.exit_code == 0, linked.output
    metrics = [json.loads(out.output[out.output.index("[") :])[0]["metrics"] for out in (clean, linked)]
    assert metrics[0] == metrics[1]


def test_two_names_for_one_file_are_refused(cirr_split):
    split = cirr_split / "cirr" / "image_splits" / "split.rc2.val.json"
    names = json.loads(split.read_text())
    names["dev-1-0-img1"] = "dev/./dev-0-0-img0.png"  # another spelling of image 0's file
    split.write_text(json.dumps(names))
    with pytest.raises(UserError, match="is the same file as image 'dev-0-0-img0'.*each image must be listed once"):
        get_benchmark("cirr").load(cirr_split, "val")


@pytest.mark.parametrize("bench_name", ["circo", "freedom-ltll", "pic2word-imagenet-r"])
def test_symlink_escapes_in_the_other_loaders(tmp_path, bench_name):
    root, listed, options = BUILDERS[bench_name](tmp_path / "data")
    target = tmp_path / "outside.jpg"
    target.write_bytes(jpeg_bytes())
    path = Path(get_benchmark(bench_name).load(root, None, options).images[listed].path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    with pytest.raises(ContainmentError) as refused:
        get_benchmark(bench_name).load(root, None, options)
    assert str(target.resolve()) in str(refused.value) and FIX in str(refused.value)


# --------------------------------------------------------------------------------------------- 5. pixel budget


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("dev-3-0-img1.jpg", jpeg_claiming(20000, 20000), "400,000,000 pixels"),
        ("dev-3-0-img1.jpg", jpeg_claiming(10000, 10000), "10000x10000 = 100,000,000 pixels"),  # PIL only warns
        ("dev-3-0-img1.png", png_claiming(20000, 20000), "400,000,000 pixels"),
    ],
    ids=["jpeg-20000", "jpeg-10000", "png-20000"],
)
def test_an_image_over_the_pixel_budget_is_one_refusal_on_every_decode_path(tmp_path, one_thread, name, data, fragment):
    root = jpeg_split(tmp_path / "CIRR")
    split = root / "cirr" / "image_splits" / "split.rc2.val.json"
    split.write_text(split.read_text().replace("dev-3-0-img1.jpg", name))
    (root / "dev" / "dev-3-0-img1.jpg").unlink()
    (root / "dev" / name).write_bytes(data)
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    workers = eval_cirr(root, tmp_path / "w")
    device = eval_cirr(root, tmp_path / "d", "--decode", "device")
    one_line_error(workers, name, fragment, f"over the pixel budget of {PIXEL_BUDGET:,}")
    assert device.output == workers.output and isinstance(device.exception, SystemExit)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 400 and time.perf_counter() - started < 60  # never decoded: no gigabytes allocated
    check = json.loads(run("data", "check", "--benchmark", "cirr", "--root", root, "--json").output)
    assert check["n_unreadable"] == 1 and f"{name}: {fragment}" in check["unreadable_first"][0]
    skipped = eval_cirr(root, tmp_path / "s", "--skip-missing", "--json")
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.output[skipped.output.index("[") :])[0]["skipped"]["images_unreadable"] == 1


def test_the_workers_opener_raises_the_limit_error(tmp_path):
    from cirbench.benchmarks.base import ImageRef
    from cirbench.images import open_rgb

    (tmp_path / "bomb.png").write_bytes(png_claiming(20000, 20000))
    with pytest.raises(LimitError, match=r"bomb.png: 400,000,000 pixels, over the pixel budget of 89,478,485"):
        open_rgb(ImageRef("bomb", tmp_path / "bomb.png"))


# --------------------------------------------------------------------------------------------- 10. cheap checks


def test_the_default_check_finds_files_cut_short_by_their_end_marker(tmp_path, monkeypatch):
    root = jpeg_split(tmp_path / "CIRR")
    dev = root / "dev"
    cut_jpeg, padded, corrupt = dev / "dev-0-0-img0.jpg", dev / "dev-2-0-img0.jpg", dev / "dev-4-0-img0.jpg"
    cut_jpeg.write_bytes(cut_jpeg.read_bytes()[: len(cut_jpeg.read_bytes()) // 2])
    padded.write_bytes(padded.read_bytes() + b"\x00" * 100 + b"\r\n")  # some cameras pad after FF D9
    data = corrupt.read_bytes()
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    corrupt.write_bytes(data[:middle] + b"\xff\xc0\x00\x02" + data[middle + 4 :])  # a marker inside the scan
    split = root / "cirr" / "image_splits" / "split.rc2.val.json"
    split.write_text(split.read_text().replace("dev-1-0-img1.jpg", "dev-1-0-img1.png"))
    png = io.BytesIO()
    Image.open(dev / "dev-1-0-img1.jpg").save(png, format="PNG")
    (dev / "dev-1-0-img1.png").write_bytes(png.getvalue()[:-20])  # a PNG cut short
    check = run("data", "check", "--benchmark", "cirr", "--root", root, "--json")
    report = json.loads(check.output)
    assert check.exit_code == 1 and report["check"] == "header" and report["n_unreadable"] == 2
    assert sorted(line.split(": ", 1)[0] for line in report["unreadable_first"]) == [
        str(cut_jpeg),
        str(dev / "dev-1-0-img1.png"),
    ]
    assert all(f": {TRUNCATED}" in line for line in report["unreadable_first"]), report["unreadable_first"]
    text = run("data", "check", "--benchmark", "cirr", "--root", root)
    assert text.exit_code == 1 and str(cut_jpeg) in text.output and "truncated: no end marker" in text.output
    deep = json.loads(run("data", "check", "--benchmark", "cirr", "--root", root, "--deep", "--json").output)
    assert deep["n_unreadable"] == 3 and any(line.startswith(f"{corrupt}: ") for line in deep["unreadable_first"])
    # eval's own check stays one stat per image: nothing is opened without --skip-missing.
    monkeypatch.setattr("cirbench.images.open_within_budget", lambda path: pytest.fail(f"opened {path}"))
    data = get_benchmark("cirr").load(root, "val")
    assert prepare.image_check(data, skip_missing=False).level == "exists"
    assert len(check_images(data.images.values(), "exists").present) == 12


# --------------------------------------------------------------------------------------------- property-based tests

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**13) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)
BAD_PATHS = st.sampled_from(
    ["", ".", "..", "../x.jpg", "../../etc/passwd", "/etc/passwd", "C:/x.jpg", "\\\\server\\x.jpg", "a\0b.jpg",
     "\ud800.jpg", "dev/..", "out/x.jpg", "escape.jpg", "inner.jpg", "a/../../x.jpg", "x" * 300]
)  # fmt: skip


def outcome(load):
    """The split, or None when refused; a refusal must be one line, bounded, and a ``UserError``."""
    try:
        return load()
    except UserError as error:
        message = str(error)
        assert message and "\n" not in message and len(message) < 2000, message
        return None


def canonical(data, root: Path):
    """The split with every image key replaced by its resolved file: spellings of one file compare equal. Every
    image must resolve inside ``root``."""
    real_root = os.path.realpath(root) + os.sep
    files = {}
    for key, ref in data.images.items():
        real = os.path.realpath(ref.path)
        assert real.startswith(real_root), (key, real)
        files[key] = real

    def f(keys):
        return None if keys is None else tuple(files.get(k, k) for k in keys)

    queries = [
        (q.qid, q.texts, f((q.reference,)), f((q.target,)), f(q.gt), f(q.subset), f(q.candidates)) for q in data.queries
    ]
    return queries, sorted(files.values()), [f(p.gallery) for p in data.parts]


def plant_links(base: Path, folder: Path) -> None:
    """``escape.jpg`` and ``out/`` lead outside ``base``/root; ``inner.jpg`` to a file inside the folder."""
    (base / "outside").mkdir(exist_ok=True)
    (base / "outside" / "x.jpg").write_bytes(b"x")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "escape.jpg").symlink_to(base / "outside" / "x.jpg")
    (folder / "out").symlink_to(base / "outside")
    (folder / "kept.jpg").write_bytes(b"y")
    (folder / "inner.jpg").symlink_to(folder / "kept.jpg")


def make_circo(data: Path) -> tuple[Path, str, dict]:
    root = data / "CIRCO"
    shutil.copytree(FIXTURES / "circo", root)
    ids = sorted(
        {
            x
            for r in json.loads((root / "annotations" / "val.json").read_text())
            for x in [r["reference_img_id"], *r["gt_img_ids"]]
        }
    )
    info = root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in ids]}))
    return root, str(ids[0]), {}


def make_ltll(data: Path) -> tuple[Path, str, dict]:
    lines = ["ltll/New/images/Bridge/n1.jpg New Bridge", "ltll/New/images/Tower/n2.jpg New Tower",
             "ltll/Old/images/Bridge/o1.jpg Old Bridge", "ltll/Old/images/Tower/o3.jpg Old Tower"]  # fmt: skip
    (data / "ltll").mkdir(parents=True)
    (data / "ltll" / "full_files.csv").write_text("\n".join(lines))
    return data, "ltll/Old/images/Bridge/o1.jpg", {}


def make_imagenet_r(data: Path) -> tuple[Path, str, dict]:
    (data / "imgnet").mkdir(parents=True)
    for name in ("imgnet_real_query.txt", "imgnet_targets.txt"):
        shutil.copy(FIXTURES / "imagenet-r" / name, data / "imgnet" / name)
    return data, "imgnet/imagenet-r/n04147183/toy_0.jpg", {}


BUILDERS = {"circo": make_circo, "freedom-ltll": make_ltll, "pic2word-imagenet-r": make_imagenet_r}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property")


def _folder(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


def judge(kind: str, same: bool, loaded, root: Path, clean, must_refuse: tuple[str, ...]) -> None:
    """The property every loader keeps: a respelling loads as the clean form; any other change either loads with
    every image inside the root (``canonical`` checks it) or was refused in one line (``outcome`` gave None)."""
    event(f"{kind}: {'refused' if loaded is None else 'accepted'}")
    if same:
        assert loaded is not None and canonical(loaded, root) == clean
    elif loaded is not None:
        assert kind not in must_refuse
        canonical(loaded, root)


@PROPERTY
@given(st.data())
def test_cirr_loader_property(scratch, data):
    base = _folder(scratch)
    root = make_cirr(base / "CIRR")
    bench = get_benchmark("cirr")
    clean = canonical(bench.load(root, "val"), root)
    plant_links(base, root / "dev")
    split_path, caps_path = (
        root / "cirr" / "image_splits" / "split.rc2.val.json",
        root / "cirr" / "captions" / "cap.rc2.val.json",
    )
    split, caps = json.loads(split_path.read_text()), json.loads(caps_path.read_text())
    name = data.draw(st.sampled_from(sorted(split)))
    kind = data.draw(st.sampled_from(["spelling", "path", "field", "drop", "duplicate", "alias"]))
    same = kind == "spelling"
    if same:
        split[name] = data.draw(st.sampled_from(["dev/{}", "./dev/./{}", "dev//{}", "./dev/../dev/{}"])).format(
            f"{name}.png"
        )
    elif kind == "path":
        links = st.sampled_from(["dev/escape.jpg", "dev/out/x.jpg", "dev/inner.jpg"])
        split[name] = data.draw(BAD_PATHS | JSON | links | st.text(max_size=12).map(lambda t: f"dev/{t}"))
    elif kind in ("field", "drop"):
        record = caps[data.draw(st.integers(0, len(caps) - 1))]
        field = data.draw(st.sampled_from(["pairid", "reference", "caption", "img_set", "target_hard", "target_soft"]))
        if kind == "drop":
            del record[field]
        else:
            record[field] = data.draw(JSON)
    elif kind == "duplicate":
        caps.append(dict(caps[data.draw(st.integers(0, len(caps) - 1))]))
    else:
        split["dev-99-0-img0"] = split[name]
    split_path.write_text(json.dumps(split))
    caps_path.write_text(json.dumps(caps))
    judge(kind, same, outcome(lambda: bench.load(root, "val")), root, clean, must_refuse=("duplicate", "alias", "drop"))


@PROPERTY
@given(st.data())
def test_circo_loader_property(scratch, data):
    base = _folder(scratch)
    root, _, _ = make_circo(base)
    bench = get_benchmark("circo")
    clean = canonical(bench.load(root, "val"), root)
    images = root / "COCO2017_unlabeled" / "unlabeled2017"
    plant_links(base, images)
    info_path = root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    ann_path = root / "annotations" / "val.json"
    info, records = json.loads(info_path.read_text()), json.loads(ann_path.read_text())
    entry = info["images"][data.draw(st.integers(0, len(info["images"]) - 1))]
    kind = data.draw(st.sampled_from(["spelling", "path", "id", "field", "duplicate"]))
    same = kind == "spelling"
    if same:
        entry["file_name"] = data.draw(st.sampled_from(["./{}", "{}", ".//{}"])).format(entry["file_name"])
    elif kind == "path":
        entry["file_name"] = data.draw(BAD_PATHS | JSON)
    elif kind == "id":
        entry["id"] = data.draw(JSON)
    elif kind == "field":
        record = records[data.draw(st.integers(0, len(records) - 1))]
        record[data.draw(st.sampled_from(sorted(record)))] = data.draw(JSON)
    else:
        info["images"].append(dict(entry))
    info_path.write_text(json.dumps(info))
    ann_path.write_text(json.dumps(records))
    judge(kind, same, outcome(lambda: bench.load(root, "val")), root, clean, must_refuse=("duplicate",))


@PROPERTY
@given(st.data())
def test_fashioniq_loader_property(scratch, data):
    base = _folder(scratch)
    root = base / "FIQ"
    shutil.copytree(FIXTURES / "fashioniq", root)
    bench = get_benchmark("fashioniq")
    clean = canonical(bench.load(root, "val"), root)
    plant_links(base, root / "images")
    split_path, caps_path = root / "image_splits" / "split.dress.val.json", root / "captions" / "cap.dress.val.json"
    gallery, records = json.loads(split_path.read_text()), json.loads(caps_path.read_text())
    kind = data.draw(st.sampled_from(["asin", "field", "duplicate", "link"]))
    index = data.draw(st.integers(0, len(gallery) - 1))
    if kind == "asin":
        gallery[index] = data.draw(BAD_PATHS | JSON)
    elif kind == "field":
        record = records[data.draw(st.integers(0, len(records) - 1))]
        record[data.draw(st.sampled_from(["candidate", "target", "captions"]))] = data.draw(JSON | BAD_PATHS)
    elif kind == "duplicate":
        gallery.append(gallery[index])
    else:  # the gallery names a file that is a symlink out of images/
        (root / "images" / f"{gallery[index]}.jpg").symlink_to(base / "outside" / "x.jpg")
    split_path.write_text(json.dumps(gallery))
    caps_path.write_text(json.dumps(records))
    loaded = outcome(lambda: bench.load(root, "val"))
    event(f"{kind}: {'refused' if loaded is None else 'accepted'}")
    if loaded is not None:
        assert kind not in ("duplicate", "link")
        result = canonical(loaded, root)
        assert kind != "field" or result[1] == clean[1]


@PROPERTY
@given(st.data())
def test_list_loaders_property(scratch, data):
    """FreeDom's LTLL list and Pic2Word's ImageNet-R lists: one line edited in any way."""
    base = _folder(scratch)
    benchmark = data.draw(st.sampled_from(["freedom-ltll", "pic2word-imagenet-r"]))
    root, _, options = BUILDERS[benchmark](base / "data")
    bench = get_benchmark(benchmark)
    clean = canonical(bench.load(root, None, options), root)
    lists = sorted(p for p in root.rglob("*") if p.suffix in (".csv", ".txt"))
    path = data.draw(st.sampled_from(lists))
    lines = path.read_text().splitlines()
    number = data.draw(st.integers(0, len(lines) - 1))
    first, _, rest = lines[number].partition(" ")
    plant_links(base, root / first.split("/")[0])
    kind = data.draw(st.sampled_from(["spelling", "path", "line", "duplicate"]))
    same = kind == "spelling" and benchmark == "freedom-ltll"  # Pic2Word's paths must match its pattern exactly
    if kind == "spelling":
        top, _, tail = first.partition("/")
        lines[number] = f"{top}/{data.draw(st.sampled_from(['./', '/', 'x/../']))}{tail} {rest}"
    elif kind == "path":
        lines[number] = f"{first.split('/')[0]}/{data.draw(BAD_PATHS)} {rest}"
    elif kind == "line":
        lines[number] = data.draw(st.text(max_size=40))
    else:
        lines.append(lines[number])
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    judge(kind, same, outcome(lambda: bench.load(root, None, options)), root, clean, must_refuse=("duplicate",))
