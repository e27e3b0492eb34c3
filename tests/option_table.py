"""Inputs for the frozen accept/reject table of ``tests/test_options_table.py`` (cirbench.options, every kind, and
the training config), kept apart so the table's expectations could be computed from the hand-written parsers that
came before the pydantic ones (``FROZEN`` in ``option_table_frozen.py``: each input's value or exact message)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cirbench.options import Option

ENV = {"HOME": "/home/cirb", "CIRB_DATA": "/data/cirb"}  # paths expand ~ and $VARS: fixed for the table
UNSET = ("NOPE_CIRB",)


def _has_slot(value: str) -> str | None:
    return None if "$" in value else "a prompt with a '$' slot"


OPTIONS: dict[str, Option] = {
    "bool": Option("flag", "bool", False),
    "int": Option("count", "int", 0),
    "int_bounded": Option("renders", "int", 2, minimum=1, maximum=32),
    "float": Option("weight", "float", 0.5),
    "float_open": Option("p", "float", 0.5, exclusive_minimum=0, exclusive_maximum=1),
    "str": Option("name", "str", "x"),
    "str_checked": Option("prompt", "str", "a $", check=_has_slot),
    "choice": Option("scoring", "choice", "hard", choices=("hard", "soft")),
    "choice_digits": Option("level", "choice", "1", choices=("0", "1")),
    "choices": Option("parts", "choices", ["a"], choices=("a", "b", "c")),
    "path": Option("root", "path", None),
}

COMMON: list[Any] = [None, "", " ", True, False, 0, 1, -1, 2, 1.0, 0.5, float("nan"), float("inf"), "abc"]
COMMON += [[], ["a"], ("a",), {"a"}, {"a": 1}, b"x", Path("a/b")]

EXTRA: dict[str, list[Any]] = {
    "bool": ["true", "True", " TRUE ", "1", "yes", "Yes", "false", "0", "no", "NO", "on", "off", "t", "f", "y", "n"]
    + ["maybe", "'false'", "2", "1.0", "true\n", 0.0, np.bool_(True), np.int64(1)],
    "int": [5, -3, 2**70, -0.0, 5.0, 5.5, 1e20, 1e300, "5", " 5 ", "+5", "-5", "1_000", "5.0", "5.5", "1e3"]
    + ["\u0665", "0x10", "05", "- 5", "5 5", np.int64(5), np.float64(5.0)],
    "int_bounded": [0, 32, 33, "0", "33", 32.0, " 1 "],
    "float": [-2.5, 1e308, -0.0, 2**70, "0.25", " 0.25 ", "1e3", "1_000.5", "nan", "inf", "-Infinity", "infinity"]
    + ["1,5", "\u0665", "0x10", ".5", "5.", "1e400", 10**400, np.float64(0.5), np.float64("nan"), np.int64(3)],
    "float_open": ["1", "-3", 0.999, "0.25"],
    "str": ["a", " a ", 5, Path("x")],
    "str_checked": ["a $", "a"],
    "choice": ["hard", " soft ", "HARD", "hard,soft", "hard\n", ["hard"]],
    "choice_digits": ["1", " 0", "2"],
    "choices": ["a", "a,b", " a , b ", "[a,b]", "[a, c]", "a,,b", ",", "a,a", "a,d", ["a", "b"], ("b",)]
    + [["a", "a"], [" a"], ["A"], "A", ["a", 1], "[]", "a, b,", ("a", "b", "c"), [["a"]]],
    "path": ["x", "~/x", "~", "$CIRB_DATA/x", "${CIRB_DATA}/x", "$NOPE_CIRB/x", "a//b", "a/./b", "a/", "./a"]
    + ["/abs/../b", Path("~/x"), "  ", 5],
}


def option_inputs() -> list[tuple[str, Any]]:
    """(kind, value) for every kind: the common inputs, then the kind's own."""
    out = [(kind, value) for kind in OPTIONS for value in COMMON + EXTRA[kind]]
    return list({(kind, repr(value)): (kind, value) for kind, value in out}.values())


TRAIN_INPUTS: dict[str, list[Any]] = {
    "steps": [5, 0, -1, "5", 5.0, True, None, "abc", 1.5, 2**70],
    "threads": [None, 2, 0, "2", 2.0, True],
    "seed": [0, 2**32 - 1, 2**32, -1],
    "val_first": [None, 0, -1],
    "lr": [1, 0.001, 0, -1, "0.1", float("nan"), float("inf"), True, None, 1e31, 1e30, 10**400],
    "phi_dropout": [0, 0.0, 1, 0.99, 1.0],
    "l2_normalize": [True, False, 1, 0, "true", None, "maybe"],
    "spacy_model": ["x", "", 5, None, ["a"], Path("x")],
    "masks": [None, "x", "", 5, Path("x")],
    "out": ["x", ["a", "b"], None],
    "corpora": [[], ["a"], ["a", 1], "a", ("a",), None, ["a", "a"]],
    "mask_mode": ["upstream", "whole-word", "whole_word", " upstream", 1, None],
    "varlen_attention": [False, "off", True, "fast", "auto"],
    "host_sync": ["never", "log"],
    "precision": ["auto", "fp16", "fp64"],
    "device": ["cpu", "cuda:1", "gpu", "auto", 5, None, ""],
    "column": [None, "text", 5],
    "stesp": [5],
}


def train_inputs() -> list[tuple[str, Any]]:
    return [(name, value) for name, values in TRAIN_INPUTS.items() for value in values]
