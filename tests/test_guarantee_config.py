"""Guarantee 7 (strict configuration) and the YAML part of guarantee 5 (bounded work).

Cards, ``-o``/``-p``/``--index-param``/``--set`` values and the training config go through one strictness layer
(``cirbench.options``: did-you-mean, duplicates, ranges; ``cirbench.yaml_io``: the strict, bounded YAML reader).
Known-answer fault tests run through the CLI; property tests show that any input is either accepted exactly as its
clean form or refused as one ``UserError`` line, never another exception.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_support import one_line_error, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cirbench import yaml_io
from cirbench.cards import load_benchmark_card, load_cards, load_method_card
from cirbench.errors import CardError, LimitError, OptionError, UserError
from cirbench.options import Option, parse_options, range_problem, split_pairs

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHOD_CARD = "name: m\nmethod: image+text\nbackbone: cirbench-tiny:random\n"
BENCH_CARD = "name: s\nbenchmark: shapes\nsplit: test\n"
BOMB = "".join(
    [
        "name: m\nmethod: image+text\nbackbone: cirbench-tiny:random\ndescription:\n",
        '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(f"  {c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)


def one_line(error: BaseException) -> str:
    """The message of a refusal: a ``UserError`` whose text is one bounded line."""
    assert isinstance(error, UserError), repr(error)
    text = str(error)
    assert "\n" not in text and "Traceback" not in text and len(text) < 2000, text
    return text


def outcome(call) -> tuple[str, Any]:
    """("ok", value) or ("error", one-line message); any other exception fails the test."""
    try:
        return "ok", call()
    except UserError as error:
        return "error", one_line(error)


def project(tmp_path: Path, method: str = METHOD_CARD, bench: str = BENCH_CARD) -> Path:
    for folder, text in (("methods", method), ("benchmarks", bench)):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / f"{folder[0]}.yaml").write_text(text)
    return tmp_path


def eval_all(tmp_path: Path, monkeypatch, **cards: str):
    """``cirbench eval --all`` from a project folder holding these cards (found upward from the working dir)."""
    project(tmp_path, **cards)
    monkeypatch.chdir(tmp_path)
    return run("eval", "--all", "--results-dir", tmp_path / "results", "--device", "cpu")


# --------------------------------------------------------------------------------------------- cards: known answers


def test_every_card_in_the_repository_and_the_package_loads_strictly():
    folders = [
        (ROOT / "methods", load_method_card),
        (ROOT / "cirbench" / "default_cards" / "methods", load_method_card),
    ]
    folders += [(ROOT / "benchmarks", load_benchmark_card)]
    folders += [(ROOT / "cirbench" / "default_cards" / "benchmarks", load_benchmark_card)]
    counts = [len(load_cards(folder, loader)) for folder, loader in folders]
    assert all(counts) and sum(counts) >= 40
    card = load_method_card(ROOT / "methods" / "lincir-vit-l-14.yaml")  # documentation fields are declared, typed
    assert card.official_checkpoint is not None and card.official_checkpoint.file == "lincir_large.pt"


@pytest.mark.parametrize(
    ("method", "bench", "fragments"),
    [
        (METHOD_CARD + "optoins: {}\n", BENCH_CARD, ["m.yaml", "unknown field(s) optoins", "did you mean 'options'?"]),
        (METHOD_CARD, BENCH_CARD + "protocol: {seed: 1}\n", ["b.yaml", "unknown field(s) protocol", "'options'"]),
        (METHOD_CARD + "backbone: ViT-B-32:openai\n", BENCH_CARD, ["m.yaml", "'backbone' is given twice"]),
        (METHOD_CARD + "options: {batch_size: 2, batch_size: 4}\n", BENCH_CARD, ["'batch_size' is given twice"]),
        (METHOD_CARD + "benchmarks: [shape]\n", BENCH_CARD, ["m.yaml", "unknown benchmark 'shape'", "'shapes'"]),
        (METHOD_CARD + "options: {batch_size: 0}\n", BENCH_CARD, ["m.yaml", "batch_size=0", "at least 1"]),
        (METHOD_CARD.replace("image+text", "image+txt"), BENCH_CARD, ["m.yaml", "unknown method 'image+txt'"]),
        (METHOD_CARD, BENCH_CARD + "options: {renders: 0}\n", ["b.yaml", "renders=0", "is not valid"]),
        (METHOD_CARD, BENCH_CARD.replace("test", "tset"), ["b.yaml", "not 'tset'"]),
        (METHOD_CARD + "official_checkpoint: {fil: x.pt}\n", BENCH_CARD, ["m.yaml", "official_checkpoint.fil"]),
        (METHOD_CARD + "path: /elsewhere\n", BENCH_CARD, ["m.yaml", "unknown field(s) path"]),
        (METHOD_CARD + "description: [" + ", ".join(["x"] * 5000) + "]\n", BENCH_CARD, ["m.yaml", "'description'"]),
        (METHOD_CARD + "quick_gelu: 'no'\n", BENCH_CARD, ["m.yaml", "field 'quick_gelu'"]),
    ],
)
def test_bad_cards_are_one_line_through_eval_all(tmp_path, monkeypatch, method, bench, fragments):
    out = eval_all(tmp_path, monkeypatch, method=method, bench=bench)
    one_line_error(out, *fragments)
    assert len(out.output) < 1000  # a huge value is never printed whole


def test_two_cards_with_one_name_are_refused(tmp_path, monkeypatch):
    project(tmp_path)
    (tmp_path / "methods" / "n.yml").write_text(METHOD_CARD.replace("image+text", "image-only"))
    monkeypatch.chdir(tmp_path)
    one_line_error(run("eval", "--all", "--device", "cpu"), "m.yaml and", "n.yml both have the name 'm'")


def test_documentation_fields_are_declared_and_kept(tmp_path):
    text = METHOD_CARD + (
        "source_url: https://example.org/w.pt\nnotes: trained by us\ncheckpoint_file: w.pt\n"
        "official_checkpoint: {file: w.pt, url: 'https://example.org/w.pt', format: state_dict}\n"
    )
    card = load_method_card(project(tmp_path, method=text) / "methods" / "m.yaml")
    assert (card.source_url, card.notes, card.checkpoint_file) == ("https://example.org/w.pt", "trained by us", "w.pt")
    assert card.official_checkpoint.format == "state_dict"


def test_an_alias_bomb_card_is_one_line_within_two_seconds(tmp_path, monkeypatch):
    start = time.perf_counter()
    out = eval_all(tmp_path, monkeypatch, method=BOMB)
    one_line_error(out, "m.yaml", "aliases expand to more than")
    assert time.perf_counter() - start < 2.0


def test_a_card_over_one_mebibyte_is_refused_before_parsing(tmp_path, monkeypatch):
    big = METHOD_CARD + "description: >-\n" + ("  " + "x" * 1000 + "\n") * 2100  # 2 MiB
    out = eval_all(tmp_path, monkeypatch, method=big)
    one_line_error(out, "m.yaml", "larger than 1,048,576 bytes")


def test_aliases_and_merge_keys_within_the_bounds_still_work(tmp_path):
    text = "base: &b {x: 1, y: [1, 2]}\nother:\n  <<: *b\n  x: 2\nlist: [*b, *b]\n"
    assert yaml_io.load(text) == yaml.safe_load(text)
    with pytest.raises(LimitError, match="contains it"):
        yaml_io.load("&a [*a]", "doc")
    with pytest.raises(LimitError, match="nested more than 64"):
        yaml_io.load("[" * 200 + "]" * 200, "doc")
    with pytest.raises(LimitError, match="more than 1000 YAML aliases"):
        yaml_io.load("a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n", "doc")


# --------------------------------------------------------------------------------------------- flags: known answers


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["-m", "slerp", "-o", "alpha=0.6", "-o", "alpha=0.7"], ["alpha is given twice", "'0.6', then '0.7'"]),
        (["-m", "image+text", "-p", "seed=1", "-p", " seed=2"], ["seed is given twice"]),
        (["-m", "image+text", "--index", "faiss-ivf", "--index-param", "nprobe=1", "--index-param", "nprobe=2"], []),
        (["-m", "image+text", "-o", "batch_sise=4"], ["unknown option(s) batch_sise", "did you mean 'batch_size'?"]),
        (["-m", "random", "-o", "seed=-1"], ["seed='-1' is not valid; expected a value in [0, 4294967295]"]),
        (["-m", "image+text", "-p", "seed=99999999999999999999"], ["expected a value in [0, 4294967295]"]),
        (["-m", "image+text", "--batch-size", "0"], ["--batch-size 0: expected at least 1"]),
        (["-m", "image+text", "--workers", "-1"], ["--workers -1: expected at least 0"]),
    ],
)
def test_bad_option_flags_are_one_line(tmp_path, flags, fragments):
    args = ["eval", "-b", "cirbench-tiny:random", "--benchmark", "shapes", "--split", "test", *flags]
    out = run(*args, "--results-dir", tmp_path / "r", "--device", "cpu")
    one_line_error(out, *(fragments or ["nprobe is given twice"]))


def train_cli(tmp_path: Path, *extra: str):
    (tmp_path / "c.txt").write_text("a red dog\n" * 20)
    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", tmp_path / "c.txt", "--out", tmp_path / "run"]
    return run(*args, "--quiet", *extra)


@pytest.mark.parametrize(
    ("settings_", "fragment"),
    [
        (["lr=0"], "training option lr=0 is not valid; expected a value in (0, 1e+30]"),
        (["lr=-1"], "training option lr=-1 is not valid; expected a value in (0, 1e+30]"),
        (["steps=0"], "training option steps=0 is not valid; expected at least 1"),
        (["lr=.nan"], "lr=nan is not valid; expected a finite number"),
        (["phi_dropout=1"], "phi_dropout=1 is not valid; expected a value in [0, 1)"),
        (["noise_scale=-0.5"], "noise_scale=-0.5 is not valid; expected at least 0"),
        (["global_batch=0"], "global_batch=0 is not valid; expected at least 1"),
        (["mask_mode=whole_word"], "mask_mode='whole_word' is not one of upstream, whole-word"),
        (["stesp=5"], "did you mean 'steps'?"),
        (["steps=5", "steps=6"], "--set: steps is given twice (5, then 6)"),
        (["global-batch=8", "global_batch=16"], "global_batch is given twice"),
        (["lr=&a [*a]"], "contains it"),
        (["lr={a: 1, a: 2}"], "the key 'a' is given twice"),
        (["device=gpu"], "--set: training option device='gpu' is not a device"),
    ],
)
def test_bad_training_settings_are_one_line(tmp_path, settings_, fragment):
    extra = [part for value in settings_ for part in ("--set", value)]
    one_line_error(train_cli(tmp_path, *extra), fragment)
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("train", "fragment"),
    [
        ("  lr: 0\n", "lr=0 is not valid; expected a value in (0, 1e+30]"),
        ("  stesp: 4\n", "did you mean 'steps'?"),
        ("  steps: 4\n  steps: 5\n", "the key 'steps' is given twice"),
        ("  out: [a, b]\n", "training option out=['a', 'b'] is not valid; expected str"),
        ("  corpora: captions.txt\n", "training option corpora="),
    ],
)
def test_a_bad_train_section_in_a_config_card_is_one_line(tmp_path, train, fragment):
    card = tmp_path / "card.yaml"
    card.write_text("name: l\nmethod: lincir\nbackbone: cirbench-tiny:random\ntrain:\n" + train)
    one_line_error(train_cli(tmp_path, "--config", card), fragment)


def test_option_bounds_are_declared_once():
    option = Option("p", "float", 0.5, exclusive_minimum=0, exclusive_maximum=1)
    assert option.parse("0.25", "x") == 0.25
    for bad in ("0", "1", "-3"):
        with pytest.raises(OptionError, match=r"expected a value in \(0, 1\)$"):
            option.parse(bad, "x")
    assert range_problem(float("nan"), minimum=0) == "at least 0"
    assert range_problem(3, maximum=2) == "at most 2" and range_problem(2, maximum=2) is None


# --------------------------------------------------------------------------------------------- properties


def _registered_options() -> list[tuple[str, tuple[Option, ...]]]:
    from cirbench.benchmarks import BENCHMARKS
    from cirbench.methods import METHODS
    from cirbench.search import INDEX_OPTIONS

    out = [(f"method {e.name}", tuple(e.options)) for e in METHODS.entries()]
    out += [(f"benchmark {b.name}", tuple(b.options)) for b in BENCHMARKS.entries()]
    return out + [(f"--index {name}", tuple(options)) for name, options in INDEX_OPTIONS.items()]


OWNERS = _registered_options()
WORDS = st.sampled_from(["true", "false", "yes", "0", "1", "-1", "0.5", "1e9", "nan", "inf", "", " ", "[a]", "a,b"])
RAW = st.one_of(WORDS, st.text(max_size=12), st.integers(-(2**70), 2**70).map(str), st.floats().map(str))
TYPED = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=10), st.lists(WORDS)
)


def _values_inside_declarations(declared: tuple[Option, ...], parsed: dict[str, Any]) -> None:
    for option in declared:
        value = parsed[option.name]
        if option.kind in ("int", "float") and value is not None:
            bounds = (option.minimum, option.maximum, option.exclusive_minimum, option.exclusive_maximum)
            assert range_problem(value, *bounds) is None, (option.name, value)
        if option.kind == "choice":
            assert value in option.choices


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_key_value_flags_parse_or_are_one_line(data):
    owner, declared = data.draw(st.sampled_from(OWNERS))
    names = [o.name for o in declared] + ["promt", "seed ", ""]
    keys = data.draw(
        st.lists(st.one_of(st.sampled_from(names), st.text(max_size=8).filter(lambda k: "=" not in k)), max_size=4)
    )
    pairs = [f"{key}={data.draw(RAW)}" for key in keys]
    kind, value = outcome(lambda: parse_options(declared, split_pairs(pairs), owner))
    if kind == "ok":
        _values_inside_declarations(declared, value)
        stripped = [key.strip() for key in keys]
        assert len(set(stripped)) == len(stripped)  # a key given twice is never accepted
        padded = [f" {p.partition('=')[0]} = {p.partition('=')[2]} " for p in pairs]
        if all(o.kind in ("int", "float", "bool", "choice", "choices") for o in declared):
            assert parse_options(declared, split_pairs(padded), owner) == value  # the clean form, same result


@FAST
@given(st.data())
def test_any_typed_card_option_value_parses_or_is_one_line(data):
    owner, declared = data.draw(st.sampled_from(OWNERS))
    given_ = {o.name: data.draw(TYPED) for o in declared if data.draw(st.booleans())}
    kind, value = outcome(lambda: parse_options(declared, given_, owner))
    if kind == "ok":
        _values_inside_declarations(declared, value)
        as_text = {k: str(v) for k, v in given_.items() if isinstance(v, int) and not isinstance(v, bool)}
        if as_text:  # a card's 5 and a flag's "5" are the same option value
            assert {k: value[k] for k in as_text} == {k: parse_options(declared, as_text, owner)[k] for k in as_text}


CARD_FIELDS = ["name", "description", "options", "backbone", "variant", "benchmarks", "quick_gelu", "notes", "train"]
CARD_FIELDS += ["source_url", "checkpoint_file", "official_checkpoint", "optoins", "protocol", "path", "Method"]
YAML_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "scratch-cards"
    folder.mkdir(exist_ok=True)
    return folder


PLAUSIBLE_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "variant": st.text(max_size=8),
        "notes": st.text(max_size=8),
        "source_url": st.text(max_size=8),
        "checkpoint_file": st.text(max_size=8),
        "quick_gelu": st.one_of(st.none(), st.booleans()),
        "benchmarks": st.lists(st.sampled_from(["shapes", "cirr", "shape"]), max_size=2),
        "options": st.fixed_dictionaries(
            {}, optional={"batch_size": st.integers(-1, 300), "fiq_join": st.sampled_from(["both-orders", "x"])}
        ),
    },
)


@FAST
@given(
    extra=st.one_of(
        PLAUSIBLE_FIELDS,
        st.dictionaries(st.one_of(st.sampled_from(CARD_FIELDS), st.text(max_size=8)), YAML_VALUE, max_size=3),
    ),
    twice=st.one_of(st.none(), st.integers(0, 5)),
)
def test_any_method_card_is_read_exactly_or_refused_in_one_line(tmp_path_factory, extra, twice):
    folder = _scratch(tmp_path_factory)
    data = {"name": "m", "method": "image+text", "backbone": "cirbench-tiny:random", **extra}
    text = yaml.safe_dump(data, sort_keys=False)
    duplicate = list(data)[twice] if twice is not None and twice < len(data) else None
    if duplicate is not None:  # the same key again, as a person pasting a line twice would
        text += yaml.safe_dump({duplicate: data[duplicate]})
    (folder / "m.yaml").write_text(text)
    kind, card = outcome(lambda: load_method_card(folder / "m.yaml"))
    if duplicate:
        assert kind == "error" and "given twice" in card
    elif kind == "ok":  # accepted: every key written is a declared field, read as written (nothing dropped)
        dumped = card.model_dump()
        for key, value in data.items():
            assert key in dumped and key != "path", key
            if key in ("name", "method", "backbone", "variant", "description", "notes", "source_url", "options"):
                assert dumped[key] == ({} if key == "options" and value is None else value), key  # options: ~


@FAST
@given(
    st.one_of(
        st.lists(st.sampled_from(["# note", "\n", "   ", "\t", "...", "---", "#", "options: {}", "x"]), max_size=4).map(
            lambda parts: "".join(parts).encode()
        ),
        st.text(max_size=60).map(str.encode),
        st.binary(max_size=60),
    )
)
def test_any_text_after_a_card_is_the_same_card_or_one_line(tmp_path_factory, noise):
    folder = _scratch(tmp_path_factory)
    (folder / "b.yaml").write_bytes(BENCH_CARD.encode() + noise)
    kind, card = outcome(lambda: load_benchmark_card(folder / "b.yaml"))
    if kind == "ok":
        assert (card.name, card.benchmark, card.split, card.options) == ("s", "shapes", "test", {})


@FAST
@given(
    data=st.dictionaries(st.text(min_size=1, max_size=6), YAML_VALUE, min_size=1, max_size=4),
    twice=st.booleans(),
)
def test_the_strict_loader_equals_pyyaml_or_refuses_a_key_given_twice(data, twice):
    text = yaml.safe_dump(data, sort_keys=False)
    if twice:
        key = next(iter(data))
        text += yaml.safe_dump({key: "again"})
        with pytest.raises(yaml_io.StrictYAMLError, match="given twice"):
            yaml_io.load(text)
    else:
        assert yaml_io.load(text) == yaml.safe_load(text)


TRAIN_KEYS = ["lr", "steps", "global_batch", "accum", "phi_dropout", "noise_scale", "seed", "threads", "val_first"]
TRAIN_KEYS += ["mask_mode", "precision", "host_sync", "pack", "corpora", "stesp", "global-batch", "out"]
SET_VALUES = st.one_of(
    WORDS,
    st.integers(-5, 10**12).map(str),
    st.floats().map(str),
    st.sampled_from(["[a, b]", "{a: 1}", "&a [*a]", "!!binary x", "2024-02-30", "~", "off", "fp16", "whole-word"]),
    st.text(max_size=10),
)


PLAUSIBLE_SET = st.sampled_from(
    [
        ("lr", "1e-3"),
        ("lr", "1"),
        ("lr", "0"),
        ("steps", "5"),
        ("steps", "0"),
        ("global-batch", "16"),
        ("phi_dropout", "0.99"),
        ("phi_dropout", "1.0"),
        ("seed", "42"),
        ("seed", "-1"),
        ("threads", "~"),
        ("threads", "0"),
        ("mask_mode", "whole-word"),
        ("precision", "fp16"),
        ("host_sync", "log"),
        ("pack", "yes"),
        ("corpora", "[a, b]"),
        ("out", "runs/x"),
        ("val_first", "~"),
        ("noise_scale", "0"),
        ("accum", "2"),
    ]
)


@FAST
@given(
    st.lists(
        st.one_of(PLAUSIBLE_SET, st.tuples(st.one_of(st.sampled_from(TRAIN_KEYS), st.text(max_size=6)), SET_VALUES)),
        max_size=4,
    )
)
def test_any_set_values_give_a_valid_config_or_one_line(pairs):
    from cirbench.commands.train import _pairs
    from cirbench.lincir.config import TrainConfig

    flags = [f"{key}={value}" for key, value in pairs]
    kind, cfg = outcome(lambda: TrainConfig.from_dict(_pairs(flags)))
    if kind == "ok":
        assert cfg.lr > 0 and cfg.steps >= 1 and cfg.global_batch >= 1 and 0 <= cfg.phi_dropout < 1
        assert cfg.noise_scale >= 0 and 0 <= cfg.seed < 2**32 and (cfg.threads is None or cfg.threads >= 1)
        names = [key.strip().replace("-", "_") for key, _ in pairs]
        assert len(set(names)) == len(names)  # a key given twice is never accepted
        spelled = [f" {key.replace('_', '-')} ={value}" for key, value in pairs]  # --set global-batch= is global_batch
        assert TrainConfig.from_dict(_pairs(spelled)).to_dict() == cfg.to_dict()


def test_a_card_error_names_a_huge_value_briefly(tmp_path):
    text = METHOD_CARD + "variant: [" + ", ".join(str(i) for i in range(3000)) + "]\n"
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(CardError) as error:
        load_method_card(tmp_path / "m.yaml")
    assert len(one_line(error.value)) < 300


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="asserts the refusals of a machine without CUDA")
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--device", "tpu"],
         "--device 'tpu' is not a device; expected auto, cpu, cuda or cuda:N"),
        (["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--device", "cuda:1"],
         "--device cuda:1: this machine has no such device (it has: cpu)"),
        (["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", "c.txt", "--device", "cuda", "--steps", "1"],
         "--device cuda: this machine has no such device (it has: cpu)"),
    ],
)  # fmt: skip
def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("a red car\nthe dog runs\n")
    one_line_error(run(*args, "--root" if args[0] == "eval" else "--out", tmp_path / "x"), fragment)
