"""Pic2Word and SEARLE adapters: released checkpoint layouts, shape guards, prompts, targetpad, encoding.

Checkpoints are synthetic but in the released key layout (BASELINES.md §1.1/§1.6, §2.2), for the tiny backbone
(32-d image features, 64-d token embeddings). Released-size checkpoints for the shape guards use stride-0
tensors, so a 768x3072 weight costs a few bytes on disk.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Query
from cirbench.cards import load_method_card
from cirbench.errors import MethodError, OptionError
from cirbench.methods import build_method, get_method_entry
from cirbench.methods.pic2word import IM2TEXT
from cirbench.methods.pic2word import infer_backbone as pic2word_infer_backbone
from cirbench.methods.preprocessing import TargetPad, build_preprocess
from cirbench.methods.searle import infer_backbone as searle_infer_backbone
from cirbench.phi import Phi
from cirbench.text_encoding import tokenize_with_placeholder

ROOT = Path(__file__).resolve().parents[1]
PHI_KEYS = {f"layers.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
IM2TEXT_KEYS = {"layers.0.0.weight", "layers.0.0.bias", "layers.1.0.weight", "layers.1.0.bias"} | {
    "fc_out.weight",
    "fc_out.bias",
}


# --- synthetic released-format checkpoints ------------------------------------------------------------------
def _seeded(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return module.state_dict()


def save_searle(path: Path, in_dim: int = 32, out_dim: int = 64, seed: int = 0) -> Path:
    """What ``train_phi.save_phi`` writes and the release carries: ``{'Phi': state dict, 'epoch': n}``."""
    state = _seeded(Phi(in_dim, 4 * in_dim, out_dim), seed)
    assert set(state) == PHI_KEYS
    torch.save({"Phi": state, "epoch": 42}, path)
    return path


def save_pic2word(
    path: Path, prefix: str = "module.", in_dim: int = 32, middle: int = 48, out_dim: int = 64, seed: int = 1
) -> Path:
    """``src/main.py``'s checkpoint: epoch, name, frozen CLIP, DDP-prefixed IM2TEXT, optimizer state."""
    state = _seeded(IM2TEXT(in_dim, middle, out_dim, n_layer=2), seed)
    assert set(state) == IM2TEXT_KEYS
    torch.save(
        {
            "epoch": 30,
            "name": "pic2word_cc3m",
            "state_dict": {f"{prefix}token_embedding.weight": torch.zeros(4, 8)},
            "state_dict_img2text": {prefix + k: v for k, v in state.items()},
            "optimizer": {
                "state": {},
                "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.98), "params": [0, 1]}],
            },
        },
        path,
    )
    return path


def _stride0(*shape: int) -> torch.Tensor:
    return torch.zeros(1).expand(*shape)


def save_released_size_searle(path: Path, d: int) -> Path:
    h = 4 * d
    shapes = {
        "layers.0.weight": (h, d),
        "layers.0.bias": (h,),
        "layers.3.weight": (h, h),
        "layers.3.bias": (h,),
        "layers.6.weight": (d, h),
        "layers.6.bias": (d,),
    }
    torch.save({"Phi": {k: _stride0(*s) for k, s in shapes.items()}}, path)
    return path


def save_released_size_pic2word(path: Path) -> Path:
    shapes = {
        "layers.0.0.weight": (512, 768),
        "layers.0.0.bias": (512,),
        "layers.1.0.weight": (512, 512),
        "layers.1.0.bias": (512,),
        "fc_out.weight": (768, 512),
        "fc_out.bias": (768,),
    }
    torch.save({"state_dict_img2text": {f"module.{k}": _stride0(*s) for k, s in shapes.items()}}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("ckpt")
    return SimpleNamespace(
        searle=save_searle(folder / "SEARLE_tiny.pt"),
        pic2word=save_pic2word(folder / "pic2word_tiny.pt"),
        pic2word_plain=save_pic2word(folder / "pic2word_tiny_noprefix.pt", prefix=""),
    )


def encode(method, queries: list[Query], refs: torch.Tensor, benchmark: str) -> torch.Tensor:
    """What evaluation does: the benchmark turns each query into texts (joined as the method asks), the method
    encodes them with the reference features."""
    bench = get_benchmark(benchmark)
    return method.encode_queries(queries, [bench.query_texts(q, method.caption_join) for q in queries], refs)


def prompts(method, query: Query, benchmark: str) -> list[str]:
    return method.prompts(get_benchmark(benchmark).query_texts(query, method.caption_join))


def _queries() -> list[Query]:
    return [
        Query("q0", "r0", ("is red and larger",)),
        Query("q1", "r1", ("has a circle on the left",)),
        Query("q2", "r2", ("turn it into a small green triangle",)),
    ]


# --- loading --------------------------------------------------------------------------------------
def test_searle_loads_released_layout(tiny_backbone, ckpts):
    method = build_method("searle", tiny_backbone, ckpts.searle)
    assert method.preprocess == "targetpad"
    assert not method.mapper.training
    digest = hashlib.sha256(ckpts.searle.read_bytes()).hexdigest()
    assert method.info.checkpoint_id == digest == get_method_entry("searle").checkpoint_id(ckpts.searle)
    config = method.describe()
    assert config["mapper"] == "phi 32-128-128-64"
    assert config["prompt"] == "a photo of $ that {caption}"
    assert config["preprocess"] == "targetpad" and config["target_ratio"] == 1.25
    state = torch.load(ckpts.searle, weights_only=True)["Phi"]
    for key, value in method.mapper.state_dict().items():
        assert torch.equal(value, state[key])
    assert build_method("searle", tiny_backbone, ckpts.searle, {"preprocess": "clip"}).preprocess == "clip"


def test_pic2word_loads_with_and_without_module_prefix(tiny_backbone, ckpts):
    prefixed = build_method("pic2word", tiny_backbone, ckpts.pic2word)
    plain = build_method("pic2word", tiny_backbone, ckpts.pic2word_plain)
    assert prefixed.preprocess == "clip" and not prefixed.mapper.training
    assert prefixed.describe()["mapper"] == "im2text 32-48-48-64"
    refs = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(encode(prefixed, _queries(), refs, "cirr"), encode(plain, _queries(), refs, "cirr"))
    assert prefixed.info.checkpoint_id == hashlib.sha256(ckpts.pic2word.read_bytes()).hexdigest()


def test_pic2word_depth_and_width_follow_the_state_dict(tiny_backbone, tmp_path):
    state = _seeded(IM2TEXT(32, 24, 64, n_layer=3), 5)
    torch.save({"state_dict_img2text": state}, tmp_path / "deep.pt")
    method = build_method("pic2word", tiny_backbone, tmp_path / "deep.pt")
    assert method.describe()["mapper"] == "im2text 32-24-24-24-64"


def test_infer_backbone_from_released_sizes(tmp_path):
    assert searle_infer_backbone(save_released_size_searle(tmp_path / "SEARLE_ViT-L14.pt", 768)) == "ViT-L-14:openai"
    assert searle_infer_backbone(save_released_size_searle(tmp_path / "SEARLE_ViT-B32.pt", 512)) == "ViT-B-32:openai"
    assert pic2word_infer_backbone(save_released_size_pic2word(tmp_path / "pic2word_model.pt")) == "ViT-L-14:openai"
    assert get_method_entry("searle").infer_backbone is searle_infer_backbone
    assert get_method_entry("pic2word").infer_backbone is pic2word_infer_backbone
    with pytest.raises(MethodError, match="32-d image features.*pass --backbone"):
        searle_infer_backbone(save_searle(tmp_path / "tiny.pt"))
    with pytest.raises(MethodError, match="32-d image features.*pass --backbone"):
        pic2word_infer_backbone(save_pic2word(tmp_path / "tiny_p2w.pt"))


def _fake_backbone(model_id: str, image_dim: int, token_dim: int) -> SimpleNamespace:
    return SimpleNamespace(id=model_id, image_embed_dim=image_dim, token_dim=token_dim, device=torch.device("cpu"))


def test_wrong_shapes_fail_naming_both(tiny_backbone, tmp_path):
    l14 = save_released_size_searle(tmp_path / "SEARLE_ViT-L14.pt", 768)
    vit_b32 = _fake_backbone("ViT-B-32:openai", 512, 512)
    with pytest.raises(MethodError, match=r"768-d phi, backbone ViT-B-32 gives 512-d.*ViT-L-14:openai"):
        build_method("searle", vit_b32, l14)
    with pytest.raises(MethodError, match=r"768-d phi, backbone cirbench-tiny gives 32-d"):
        build_method("searle", tiny_backbone, l14)
    with pytest.raises(MethodError, match=r"768-d IM2TEXT, backbone cirbench-tiny gives 32-d.*ViT-L-14:openai"):
        build_method("pic2word", tiny_backbone, save_released_size_pic2word(tmp_path / "pic2word_model.pt"))
    with pytest.raises(MethodError, match=r"phi outputs 48-d tokens, backbone cirbench-tiny has 64-d token"):
        build_method("searle", tiny_backbone, save_searle(tmp_path / "narrow.pt", out_dim=48))
    with pytest.raises(MethodError, match=r"IM2TEXT outputs 80-d tokens, backbone cirbench-tiny has 64-d"):
        build_method("pic2word", tiny_backbone, save_pic2word(tmp_path / "wide.pt", out_dim=80))


def test_bad_checkpoints_fail_clearly(tiny_backbone, ckpts, tmp_path):
    with pytest.raises(MethodError, match=r"no 'Phi' state dict \(top-level keys: .*state_dict_img2text"):
        build_method("searle", tiny_backbone, ckpts.pic2word)
    with pytest.raises(MethodError, match=r"no 'state_dict_img2text'.*Phi"):
        build_method("pic2word", tiny_backbone, ckpts.searle)
    with pytest.raises(MethodError, match="does not exist"):
        build_method("searle", tiny_backbone, tmp_path / "missing.pt")
    state = _seeded(Phi(32, 128, 64), 0)
    state["layers.9.weight"] = torch.zeros(2, 2)
    torch.save({"Phi": state}, tmp_path / "stray.pt")
    with pytest.raises(MethodError, match="do not fit the released layout"):
        build_method("searle", tiny_backbone, tmp_path / "stray.pt")
    torch.save({"Phi": _seeded(Phi(32, 128, 64), 0), "args": SimpleNamespace(lr=1)}, tmp_path / "pickled.pt")
    with pytest.raises(MethodError, match=r"SimpleNamespace.*weights_only=True.*torch.save\(\{'Phi'"):
        build_method("searle", tiny_backbone, tmp_path / "pickled.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MethodError, match="cannot read SEARLE checkpoint .*not a torch checkpoint"):
        build_method("searle", tiny_backbone, tmp_path / "junk.pt")
    with pytest.raises(MethodError, match="needs --checkpoint"):
        build_method("pic2word", tiny_backbone, None)


def test_options_are_checked_and_recorded(tiny_backbone, ckpts):
    with pytest.raises(OptionError, match="method pic2word: unknown option.*prompt_protcol; known: batch_size, "):
        build_method("pic2word", tiny_backbone, ckpts.pic2word, {"prompt_protcol": "lincir"})
    with pytest.raises(OptionError, match="prompt_protocol='searle' is not valid; expected one of paper, lincir"):
        build_method("pic2word", tiny_backbone, ckpts.pic2word, {"prompt_protocol": "searle"})
    with pytest.raises(OptionError, match="preprocess='squarepad' is not valid; expected one of clip, targetpad"):
        build_method("searle", tiny_backbone, ckpts.searle, {"preprocess": "squarepad"})
    with pytest.raises(OptionError, match="batch_size='two'.*an integer"):
        build_method("searle", tiny_backbone, ckpts.searle, {"batch_size": "two"})
    paper = build_method("pic2word", tiny_backbone, ckpts.pic2word).describe()
    lincir = build_method("pic2word", tiny_backbone, ckpts.pic2word, {"prompt_protocol": "lincir"}).describe()
    assert paper["prompt_protocol"] == "paper" and paper["prompt"] == "a photo of * , {caption}"
    assert (
        paper["fiq_prompt"] == "a photo of * , {cap2} and {cap1}"
        and paper["placeholder"] == "* (265), first of each row"
    )
    assert lincir["prompt_protocol"] == "lincir" and lincir["prompt"] == "a photo of $ that {caption}"
    assert lincir["placeholder"] == "$ (259), first of each row" and lincir["fiq_join"] == "both-orders"
    batch = build_method("searle", tiny_backbone, ckpts.searle, {"batch_size": "2"})
    assert batch.batch_size == 2 and batch.describe() == build_method("searle", tiny_backbone, ckpts.searle).describe()


# --- prompts --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapters(tiny_backbone, ckpts) -> SimpleNamespace:
    return SimpleNamespace(
        pic2word=build_method("pic2word", tiny_backbone, ckpts.pic2word),
        pic2word_lincir=build_method("pic2word", tiny_backbone, ckpts.pic2word, {"prompt_protocol": "lincir"}),
        searle=build_method("searle", tiny_backbone, ckpts.searle),
    )


@pytest.mark.parametrize("bench", ["cirr", "circo", "genecis", "shapes"])
def test_single_caption_prompts(adapters, bench):
    query = Query("q", "r", ("is red",))
    assert prompts(adapters.pic2word, query, bench) == ["a photo of * , is red"]
    assert prompts(adapters.pic2word_lincir, query, bench) == ["a photo of $ that is red"]
    assert prompts(adapters.searle, query, bench) == ["a photo of $ that is red"]


def test_fashioniq_prompts(adapters):
    query = Query("q", "r", ("is darker.", " has long sleeves "))
    assert prompts(adapters.pic2word, query, "fashioniq") == ["a photo of * ,  has long sleeves  and is darker."]
    both = [
        "a photo of $ that is darker and has long sleeves",
        "a photo of $ that has long sleeves and is darker",
    ]
    assert prompts(adapters.searle, query, "fashioniq") == both
    assert prompts(adapters.pic2word_lincir, query, "fashioniq") == both


def test_placeholder_token_ids():
    # Upstream BPE, BASELINES.md §1.3: 'a photo of * , a dog' -> [320, 1125, 539, 265, 267, 320, 1929].
    ids = tokenize_with_placeholder(["a photo of * , a dog"], 77, "*", 265)[0]
    assert ids[:9].tolist() == [49406, 320, 1125, 539, 265, 267, 320, 1929, 49407]
    ids = tokenize_with_placeholder(["a photo of $ that is red"], 77, "$", 259)[0]
    assert ids[4].item() == 259 and (ids == 259).sum() == 1


# --- encoding -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["searle", "pic2word"])
def test_placeholder_found_per_sample(tiny_backbone, ckpts, name):
    method = build_method("pic2word" if name == "pic2word" else "searle", tiny_backbone, getattr(ckpts, name))
    mark = method.placeholder
    prompts = [
        f"a photo of {mark} , red",
        f"{mark} is on the left",
        f"a large blue cube next to a {mark} today",
    ]
    tokens = tokenize_with_placeholder(prompts, 77, mark, method.placeholder_id)
    positions = [(row == method.placeholder_id).nonzero().flatten().tolist() for row in tokens]
    assert positions == [[4], [1], [8]]
    refs = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    batch = method.encode_prompts(prompts, refs)
    loop = torch.cat([method.encode_prompts([p], refs[i : i + 1]) for i, p in enumerate(prompts)])
    torch.testing.assert_close(batch, loop, rtol=1e-5, atol=1e-5)  # batch vs one: float summation order
    queries = _queries() + [Query("f", "r", ("is darker.", "has long sleeves"))]
    refs4 = torch.randn(4, 32, generator=torch.Generator().manual_seed(4))
    for benchmark in ("cirr", "fashioniq"):
        batch = encode(method, queries, refs4, benchmark)
        loop = torch.cat([encode(method, [q], refs4[i : i + 1], benchmark) for i, q in enumerate(queries)])
        torch.testing.assert_close(batch, loop, rtol=1e-5, atol=1e-5)


def _text_tower_by_hand(model, ids: torch.Tensor, token: torch.Tensor, placeholder_id: int) -> torch.Tensor:
    """CLIP.encode_text written out, with the embedding at the placeholder replaced."""
    x = model.token_embedding(ids).clone()
    x[0, int((ids[0] == placeholder_id).nonzero()[0])] = token
    x = x + model.positional_embedding
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return x[0, int(ids[0].argmax())] @ model.text_projection


def _image(width: int = 48, height: int = 40) -> Image.Image:
    generator = torch.Generator().manual_seed(7)
    pixels = (torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


@torch.no_grad()
def test_searle_matches_hand_written_reference(tiny_backbone, ckpts):
    model = tiny_backbone.model
    feature = model.encode_image(tiny_backbone.preprocess(_image()).unsqueeze(0))  # unnormalised
    w = torch.load(ckpts.searle, weights_only=True)["Phi"]
    h = F.gelu(F.linear(feature, w["layers.0.weight"], w["layers.0.bias"]))
    h = F.gelu(F.linear(h, w["layers.3.weight"], w["layers.3.bias"]))
    token = F.linear(h, w["layers.6.weight"], w["layers.6.bias"])[0]
    ids = tokenize_with_placeholder(["a photo of $ that is red"], 77, "$", 259)
    expected = F.normalize(_text_tower_by_hand(model, ids, token, 259), dim=-1)
    method = build_method("searle", tiny_backbone, ckpts.searle)
    got = encode(method, [Query("q", "r", ("is red",))], feature, "cirr")[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # FashionIQ: normalize((normalize(f12) + normalize(f21)) / 2) over the two stripped orders.
    f12, f21 = (
        F.normalize(_text_tower_by_hand(model, tokenize_with_placeholder([p], 77, "$", 259), token, 259), dim=-1)
        for p in (
            "a photo of $ that is darker and has long sleeves",
            "a photo of $ that has long sleeves and is darker",
        )
    )
    got = encode(method, [Query("q", "r", ("is darker.", "has long sleeves?"))], feature, "fashioniq")[0]
    torch.testing.assert_close(got, F.normalize((f12 + f21) / 2, dim=-1), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_pic2word_matches_hand_written_reference(tiny_backbone, ckpts):
    model = tiny_backbone.model
    feature = model.encode_image(tiny_backbone.preprocess(_image()).unsqueeze(0))
    w = torch.load(ckpts.pic2word_plain, weights_only=True)["state_dict_img2text"]
    h = F.relu(F.linear(feature, w["layers.0.0.weight"], w["layers.0.0.bias"]))
    h = F.relu(F.linear(h, w["layers.1.0.weight"], w["layers.1.0.bias"]))
    token = F.linear(h, w["fc_out.weight"], w["fc_out.bias"])[0]
    method = build_method("pic2word", tiny_backbone, ckpts.pic2word)
    ids = tokenize_with_placeholder(["a photo of * , is red"], 77, "*", 265)
    expected = F.normalize(_text_tower_by_hand(model, ids, token, 265), dim=-1)
    got = encode(method, [Query("q", "r", ("is red",))], feature, "cirr")[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    ids = tokenize_with_placeholder(["a photo of * , has long sleeves? and is darker."], 77, "*", 265)
    expected = F.normalize(_text_tower_by_hand(model, ids, token, 265), dim=-1)
    got = encode(method, [Query("q", "r", ("is darker.", "has long sleeves?"))], feature, "fashioniq")[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_pseudo_token_equal_to_a_word_reproduces_open_clip(tiny_backbone, ckpts):
    """A pseudo token equal to the embedding of 'dog' gives open_clip's encode_text of the plain prompt."""
    method = build_method("searle", tiny_backbone, ckpts.searle)
    dog = tiny_backbone.tokenize(["dog"])[0, 1]
    method.mapper = lambda refs: tiny_backbone.model.token_embedding.weight[dog].expand(len(refs), -1)
    got = method.encode_prompts(["a photo of $ that is red"], torch.zeros(1, 32))
    expected = tiny_backbone.model.encode_text(tiny_backbone.tokenize(["a photo of dog that is red"]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# --- targetpad ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "padded"),
    [
        ((200, 100), (200, 160)),  # ratio 2: side 200/1.25 = 160, vertical pad int(60/2) = 30 each side
        ((100, 200), (160, 200)),
        ((201, 100), (201, 160)),  # side 160.8: pad int(30.4) = 30, truncated like upstream
        ((300, 100), (300, 240)),
        ((125, 100), (125, 100)),  # ratio exactly 1.25: padding computed, but it is zero
        ((124, 100), (124, 100)),  # below the target ratio: untouched
        ((110, 100), (110, 100)),
        ((100, 100), (100, 100)),
    ],
)
def test_targetpad_geometry(size, padded):
    image = Image.new("RGB", size, (255, 255, 255))
    out = TargetPad(1.25)(image)
    assert out.size == padded
    if padded == size:
        assert out is image
    else:
        hp, vp = (padded[0] - size[0]) // 2, (padded[1] - size[1]) // 2
        assert out.getpixel((0, 0)) == (0, 0, 0)
        assert out.getpixel((hp, vp)) == (255, 255, 255)
        assert out.getpixel((padded[0] - 1, padded[1] - 1)) == (0, 0, 0)


def test_build_preprocess_kinds(tiny_backbone):
    assert build_preprocess(tiny_backbone, "clip") is tiny_backbone.preprocess
    with pytest.raises(MethodError, match="unknown preprocessing"):
        build_preprocess(tiny_backbone, "squarepad")
    white = Image.new("RGB", (200, 100), (255, 255, 255))
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1)
    black, full = -mean / std, (1 - mean) / std
    pad = build_preprocess(tiny_backbone, "targetpad")
    pickle.loads(pickle.dumps(pad))  # DataLoader workers
    x = pad(white)
    assert x.shape == (3, 32, 32)
    # 200x160 -> 40x32 -> centre crop 32x32: 30/160 of the height is padding, i.e. 6 of 32 rows each side.
    for row in (0, 4, 27, 31):
        torch.testing.assert_close(x[:, row, :], black.expand(3, 32), atol=1e-4, rtol=0)
    for row in (8, 16, 23):
        torch.testing.assert_close(x[:, row, :], full.expand(3, 32), atol=1e-4, rtol=0)
    torch.testing.assert_close(tiny_backbone.preprocess(white), full.view(3, 1, 1).expand(3, 32, 32), atol=1e-4, rtol=0)
    square = Image.new("RGB", (100, 100), (10, 200, 30))
    assert torch.equal(pad(square), tiny_backbone.preprocess(square))


# --- method cards ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("card", "method", "backbone", "checkpoint", "url"),
    [
        (
            "pic2word-vit-l-14.yaml",
            "pic2word",
            "ViT-L-14:openai",
            "../checkpoints/pic2word_model.pt",
            "https://drive.google.com/file/d/1IxRi2Cj81RxMu0ViT4q4nkfyjbSHm1dF",
        ),
        (
            "searle-xl-vit-l-14.yaml",
            "searle",
            "ViT-L-14:openai",
            "../checkpoints/SEARLE_ViT-L14.pt",
            "https://github.com/miccunifi/SEARLE/releases/download/weights/SEARLE_ViT-L14.pt",
        ),
        (
            "searle-vit-b-32.yaml",
            "searle",
            "ViT-B-32:openai",
            "../checkpoints/SEARLE_ViT-B32.pt",
            "https://github.com/miccunifi/SEARLE/releases/download/weights/SEARLE_ViT-B32.pt",
        ),
    ],
)
def test_method_cards(card, method, backbone, checkpoint, url):
    data = yaml.safe_load((ROOT / "methods" / card).read_text())
    keys = {"name", "method", "variant", "backbone", "checkpoint", "options", "description", "source_url"}
    assert keys | {"checkpoint_file", "benchmarks"} == set(data)
    # the four CIR benchmarks, and for Pic2Word also its own ImageNet-R and COCO evaluations
    extra = ["pic2word-imagenet-r", "pic2word-coco"] if method == "pic2word" else []
    assert data["benchmarks"] == ["circo", "cirr", "fashioniq", "genecis", *extra]
    assert data["name"] == card.removesuffix(".yaml")
    assert (data["method"], data["backbone"], data["checkpoint"]) == (method, backbone, checkpoint)
    assert data["checkpoint_file"] == Path(checkpoint).name
    assert data["source_url"].startswith(url)
    entry = get_method_entry(method)
    assert entry.needs_checkpoint and set(data["options"]) <= {o.name for o in entry.options}
    card = load_method_card(ROOT / "methods" / card)  # paths in a card are relative to the card file
    assert card.checkpoint == ROOT / checkpoint.removeprefix("../")
    assert entry.parse_options(card.options)  # the card's options are valid


# --- end to end -----------------------------------------------------------------------------------
def _tiny_cirr(root: Path) -> Path:
    """A 6-image CIRR val split in the official layout, images of mixed aspect ratios."""
    names = [f"dev-{i}-0-img0" for i in range(6)]
    (root / "captions").mkdir(parents=True)
    (root / "image_splits").mkdir()
    (root / "img_raw" / "dev").mkdir(parents=True)
    sizes = [(64, 32), (40, 40), (32, 64), (80, 40), (48, 44), (36, 72)]
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        color = (40 * i % 256, 255 - 30 * i, 90 + 25 * i)
        Image.new("RGB", size, color).save(root / "img_raw" / "dev" / f"{name}.png")
    split = {n: f"./dev/{n}.png" for n in names}
    (root / "image_splits" / "split.rc2.val.json").write_text(json.dumps(split))
    captions = ["is red", "has two dogs", "make it bigger", "remove the person"]
    records = [
        {
            "pairid": i,
            "reference": names[i],
            "caption": cap,
            "img_set": {"id": i, "members": [names[i], names[i + 1], names[i + 2]]},
            "target_hard": names[i + 1],
            "target_soft": {names[i + 1]: 1.0},
        }
        for i, cap in enumerate(captions)
    ]
    (root / "captions" / "cap.rc2.val.json").write_text(json.dumps(records))
    return root


@pytest.mark.parametrize(("name", "preprocess"), [("searle", "targetpad"), ("pic2word", "clip")])
def test_end_to_end_eval(tiny_backbone, ckpts, tmp_path, name, preprocess):
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    root = _tiny_cirr(tmp_path / "CIRR")
    request = RunRequest(name, "cirr", "cirbench-tiny:random", "val", root, getattr(ckpts, name))
    outcome = evaluate(resolve(request), EvalSettings(results_dir=tmp_path / "results"))
    assert not outcome.reused and outcome.path.is_file()
    record = outcome.result
    assert record.method.checkpoint_id == hashlib.sha256(getattr(ckpts, name).read_bytes()).hexdigest()
    assert record.benchmark.preprocess == preprocess == record.method.options["preprocess"]
    assert record.n_queries == 4 and set(outcome.rankings.top) == {"0", "1", "2", "3"}
    assert 0.0 <= record.metrics["R@1"] <= 100.0 and record.metrics["R@50"] == 100.0
    for q in get_benchmark("cirr").load(root, "val").queries:
        assert q.reference not in outcome.rankings.top[q.qid]


def test_options_reach_the_result_and_the_backbone_follows_the_checkpoint(tiny_backbone, ckpts, tmp_path):
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    root = _tiny_cirr(tmp_path / "CIRR")
    options = {"prompt_protocol": "lincir", "preprocess": "targetpad"}
    request = RunRequest("pic2word", "cirr", "cirbench-tiny:random", "val", root, ckpts.pic2word, options)
    result = evaluate(resolve(request), EvalSettings(results_dir=tmp_path / "results")).result
    assert result.method.options == {**options, "batch_size": 256}
    assert result.key_fields["method_options"] == options  # batch_size does not change the numbers: not keyed
    assert (
        result.method.config["placeholder"] == "$ (259), first of each row"
        and result.benchmark.preprocess == "targetpad"
    )
    assert set(result.metrics) >= {"R@1", "R@5", "Rsubset@1"}
    # Without --backbone the checkpoint decides; a tiny phi matches no released backbone and says so.
    with pytest.raises(MethodError, match="pass --backbone"):
        resolve(RunRequest("searle", "cirr", checkpoint=ckpts.searle, root=root))


# --- placeholder characters inside captions (issue: each adapter follows its official rule per row) --------------
@torch.no_grad()
def test_searle_fills_only_the_first_dollar_of_each_row(tiny_backbone, ckpts):
    """encode_with_pseudo_tokens.py replaces the first 259 of each row; a `$` in the caption keeps its embedding."""
    method = build_method("searle", tiny_backbone, ckpts.searle)
    refs = torch.randn(2, 32, generator=torch.Generator().manual_seed(11))
    prompts = ["a photo of $ that is priced at $ 5 and red", "a photo of $ that is red"]
    ids = tiny_backbone.tokenize(prompts)  # literal, as clip.tokenize: both `$` are id 259
    assert (ids[0] == 259).sum() == 2
    tokens = method.pseudo_tokens(refs)
    expected = torch.stack([_text_tower_by_hand(tiny_backbone.model, ids[i : i + 1], tokens[i], 259) for i in (0, 1)])
    torch.testing.assert_close(method.encode_prompts(prompts, refs), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_pic2word_fills_the_first_star_per_row_and_tokenizes_like_upstream(tiny_backbone, ckpts):
    method = build_method("pic2word", tiny_backbone, ckpts.pic2word)
    ids = tiny_backbone.tokenize(["a photo of * , is ** red"])
    assert (ids == 265).sum() == 1 and 4441 in ids.tolist()[0]  # `**` is one token upstream, not two placeholders
    refs = torch.randn(2, 32, generator=torch.Generator().manual_seed(12))
    # Per row, not row 0's position for the whole batch (upstream's batch bug): rows with the `*` elsewhere agree
    # with encoding each row alone.
    prompts = ["a photo of * , is red", "* is on the left and a * is below"]
    batch = method.encode_prompts(prompts, refs)
    alone = torch.cat([method.encode_prompts([p], refs[i : i + 1]) for i, p in enumerate(prompts)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)
    second = tiny_backbone.tokenize(prompts[1:])
    expected = _text_tower_by_hand(tiny_backbone.model, second, method.pseudo_tokens(refs[1:])[0], 265)
    torch.testing.assert_close(batch[1], expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_lincir_fills_every_dollar(tiny_backbone):
    from cirbench.methods.lincir import method_from_phi
    from cirbench.text_encoding import encode_tokens

    method = method_from_phi(tiny_backbone, Phi(32, 128, 64))
    refs = torch.randn(1, 32, generator=torch.Generator().manual_seed(13))
    prompt = "a photo of $ that is priced at $ 5"
    ids = tiny_backbone.tokenize([prompt])
    token = method.pseudo_tokens(refs)
    x = tiny_backbone.model.token_embedding(ids).clone()
    x[ids == 259] = token[0]
    x = tiny_backbone.model.ln_final(
        tiny_backbone.model.transformer(
            x + tiny_backbone.model.positional_embedding, attn_mask=tiny_backbone.model.attn_mask
        )
    )
    expected = x[0, int(ids[0].argmax())] @ tiny_backbone.model.text_projection
    torch.testing.assert_close(method.encode_prompts([prompt], refs)[0], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(encode_tokens(tiny_backbone.model, ids, token, 259), method.encode_prompts([prompt], refs))


def test_captions_holding_the_placeholder_are_counted(tiny_backbone, ckpts, tmp_path):
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    root = _tiny_cirr(tmp_path / "CIRR")
    path = root / "captions" / "cap.rc2.val.json"
    records = json.loads(path.read_text())
    records[0]["caption"] = "costs $5 and is red"
    path.write_text(json.dumps(records))
    request = RunRequest("searle", "cirr", "cirbench-tiny:random", "val", root, ckpts.searle)
    result = evaluate(resolve(request), EvalSettings(results_dir=None)).result
    assert result.benchmark.texts_with_placeholder == 1
    plain = evaluate(resolve(RunRequest("image+text", "cirr", "cirbench-tiny:random", "val", root)), EvalSettings(None))
    assert plain.result.benchmark.texts_with_placeholder is None  # no placeholder: nothing to count
