"""One typed option system (issue 20): method and benchmark options, cards and the training config all read values
through ``cirbench.options.Option`` (pydantic validators), and read them exactly as the hand-written parsers did.

``option_table_frozen.py`` holds what the parsers before issue 20 gave for every input of ``option_table.py``
(computed by running them, then frozen); the tests here run today's code on the same inputs."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
from option_table import ENV, OPTIONS, UNSET, option_inputs, train_inputs
from option_table_frozen import OPTIONS as FROZEN_OPTIONS
from option_table_frozen import TRAIN as FROZEN_TRAIN
from pydantic import TypeAdapter, ValidationError

import cirbench.lincir.config as config
import cirbench.options as options
from cirbench.cards import MethodCard, load_benchmark_card, load_method_card
from cirbench.errors import CardError, OptionError, TrainError
from cirbench.lincir.config import TRAIN_OPTIONS, TrainConfig
from cirbench.options import Option, OptionValueError

HUGE = "100000000000...(401 chars)"  # 10**400 as the table labels it
# The only inputs read differently from before, each on purpose: 10**400 for a float crashed with OverflowError
# (now one line), and a numpy integer is a number like the numpy float that was already accepted.
CHANGED = {
    ("float", HUGE): (
        "error",
        "owner: option weight=1000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0... is not valid; expected a finite number",
    ),
    ("float", "np.int64(3)"): ("ok", "3.0"),
}


def label(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:12]}...({len(text)} chars)"


def outcome(read, error: type[Exception]) -> tuple[str, str]:
    try:
        return ("ok", repr(read()))
    except error as refused:
        return ("error", str(refused))


@pytest.fixture
def table_env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)


def test_every_kind_reads_every_input_as_before(table_env):
    got = {
        (kind, label(v)): outcome(lambda k=kind, v=v: OPTIONS[k].parse(v, "owner"), OptionError)
        for kind, v in option_inputs()
    }
    assert set(got) == set(FROZEN_OPTIONS)
    assert {key: got[key] for key in got if key not in CHANGED} == {
        key: want for key, want in FROZEN_OPTIONS.items() if key not in CHANGED
    }
    assert {key: got[key] for key in CHANGED} == CHANGED
    assert FROZEN_OPTIONS[("float", HUGE)] == ("crash", "OverflowError")
    assert FROZEN_OPTIONS[("float", "np.int64(3)")][0] == "error"


def test_every_training_option_reads_every_input_as_before():
    got = {
        (name, label(v)): outcome(lambda n=name, v=v: getattr(TrainConfig.from_dict({n: v}), n), TrainError)
        for name, v in train_inputs()
    }
    assert got == FROZEN_TRAIN  # types, bounds, choices and the device check: values and messages unchanged


def test_every_kind_is_one_pydantic_validator_and_the_hand_written_parsers_are_gone():
    for kind in typing.get_args(options.Kind):
        for strict in (False, True):
            assert isinstance(options._adapter(kind, strict, False, ("a",)), TypeAdapter)
    parsers = [name for name in vars(options) if name.startswith("_parse_")] + ["_PARSERS"]
    assert not [name for name in parsers if hasattr(options, name)]
    assert not [name for name in ("_value_problem", "_fits", "_CHECKS") if hasattr(config, name)]


def test_every_train_config_field_is_one_option_declared_once():
    fields = dataclasses.fields(TrainConfig)
    assert [o.name for o in TRAIN_OPTIONS] == [f.name for f in fields]  # one Option per field, none twice
    hints = typing.get_type_hints(TrainConfig)
    python_types = {"int": int, "float": float, "bool": bool, "str": str, "choice": str, "list": list[str]}
    for option, field in zip(TRAIN_OPTIONS, fields, strict=True):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        assert option.strict and option.default == default, option.name
        want = python_types[option.kind] | None if option.nullable else python_types[option.kind]
        assert hints[field.name] == want, option.name  # the field's type is the Option's kind
        assert set(field.metadata) == {"role", "rules"}  # nothing else declares what a value may be
    assert inspect.getsource(config).count("Option(") == 1  # Options are made in one place, from the fields
    declarations = inspect.getsource(TrainConfig)
    assert declarations.count(" = option(") == len(fields)
    for field in fields:
        assert declarations.count(f"\n    {field.name}: ") == 1, field.name


def test_a_training_refusal_comes_from_parse_options_however_the_config_is_built():
    with pytest.raises(TrainError, match=r"^training option steps='5' is not valid; expected int$") as error:
        TrainConfig.from_dict({"steps": "5"})
    cause = error.value.__cause__
    assert (
        isinstance(cause, OptionValueError)
        and cause.option is TRAIN_OPTIONS[[o.name for o in TRAIN_OPTIONS].index("steps")]
    )
    with pytest.raises(TrainError, match=r"^training option steps='5' is not valid; expected int$"):
        TrainConfig(steps="5")  # built in code: checked by the same path (before, only bounds were)
    with pytest.raises(
        TrainError, match=r"^train lincir: unknown training option\(s\) stesp; .*did you mean 'steps'\?$"
    ):
        TrainConfig.from_dict({"stesp": 4})
    cfg = TrainConfig.from_dict({"lr": 1, "threads": None, "corpora": ["a"], "varlen_attention": False})
    assert (cfg.lr, type(cfg.lr), cfg.threads, cfg.varlen_attention) == (1, int, None, "off")
    assert dataclasses.replace(cfg, steps=3).steps == 3


def test_option_values_of_a_card_go_through_option_parse(tmp_path, monkeypatch):
    seen: list[tuple[str, object]] = []
    parse = Option.parse

    def spy(self, value, owner):
        seen.append((self.name, value))
        return parse(self, value, owner)

    monkeypatch.setattr(Option, "parse", spy)
    card = tmp_path / "b.yaml"
    card.write_text("benchmark: shapes\nsplit: test\noptions: {renders: 3, remove_reference: 'no'}\n")
    assert load_benchmark_card(card).options == {"renders": 3, "remove_reference": "no"}
    assert ("renders", 3) in seen and ("remove_reference", "no") in seen
    card.write_text("benchmark: shapes\nsplit: test\noptions: {renders: 0}\n")
    from cirbench.benchmarks import get_benchmark

    with pytest.raises(OptionError) as direct:
        get_benchmark("shapes").parse_options({"renders": 0})
    with pytest.raises(CardError) as error:
        load_benchmark_card(card)
    assert str(error.value) == f"card {card}: {direct.value}"  # the card says what `-p renders=0` says
    assert "renders=0 is not valid; expected a value in [1, 32]" in str(error.value)


def test_card_models_are_strict(tmp_path):
    base = {"name": "n", "method": "image+text"}
    assert MethodCard.model_validate({**base, "checkpoint": "w/phi.pt"}).checkpoint == Path("w/phi.pt")
    for field, value in [("benchmarks", ("cirr",)), ("description", b"x"), ("quick_gelu", "yes"), ("variant", 1)]:
        with pytest.raises(ValidationError):
            MethodCard.model_validate({**base, field: value})
    card = tmp_path / "m.yaml"
    card.write_text("method: image+text\nbackbone: cirbench-tiny:random\nquick_gelu: 'yes'\n")
    with pytest.raises(CardError, match=r"field 'quick_gelu': Input should be a valid boolean \(got 'yes'\)"):
        load_method_card(card)
