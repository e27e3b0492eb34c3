"""Backbone errors suggest what exists on this machine: the registered (shapes) backbones first, then the open_clip
weights already cached (found on disk, no network), never weights that are not here."""

from __future__ import annotations

import pytest
from huggingface_hub import constants
from typer.testing import CliRunner

from cirbench.backbone_hints import cached_open_clip
from cirbench.backbones import resolve_pretrained_file
from cirbench.cli import app
from cirbench.errors import BackboneError

EVAL = ["eval", "-m", "image+text", "--benchmark", "shapes", "--device", "cpu", "--json"]  # --json: no status lines


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No Hugging Face hub cache and no ~/.cache/clip: the answers below do not depend on this machine's caches."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return hub


def one_line(*args: str) -> str:
    out = CliRunner().invoke(app, list(args))
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
    return out.output.strip()


def test_no_backbone_suggests_the_installed_ones_not_absent_weights(empty_caches):
    line = one_line(*EVAL)
    assert line.startswith(
        "error: give --backbone for method 'image+text': installed here: shapes-clip:v1, shapes-clip:v2;"
    )
    assert "open_clip weights cached here: none;" in line and "ViT-L-14" not in line


def test_cached_open_clip_weights_are_found_on_disk(empty_caches):
    snapshot = empty_caches / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (empty_caches / "models--timm--vit_base_patch32_clip_224.openai" / "refs").mkdir()
    (empty_caches / "models--timm--vit_base_patch32_clip_224.openai" / "refs" / "main").write_text("abc123")
    assert cached_open_clip() == ["ViT-B-32:openai", "ViT-B-32-quickgelu:openai"]  # the same timm file
    assert "open_clip weights cached here: ViT-B-32:openai, ViT-B-32-quickgelu:openai;" in one_line(*EVAL)


def test_an_unknown_tag_of_a_registered_backbone_lists_its_versions(empty_caches):
    line = one_line(*EVAL, "-b", "shapes-clip:v3")
    assert line == (
        "error: unknown backbone shapes-clip:v3 (no registered backbone and no open_clip tag 'v3'); "
        "did you mean shapes-clip:v1 or shapes-clip:v2?"
    )
    assert "did you mean ViT-B-32:openai" in one_line(*EVAL, "-b", "ViT-B-32:opena")
    assert "architecture 'shapes-clp' in backbone id 'shapes-clp:v2'; did you mean shapes-clip?" in one_line(
        *EVAL, "-b", "shapes-clp:v2"
    )


def test_absent_weights_name_what_is_here(empty_caches):
    with pytest.raises(BackboneError, match="not in the local cache") as error:
        resolve_pretrained_file("ViT-B-32", "openai", allow_download=False)
    assert "installed here: shapes-clip:v1, shapes-clip:v2; open_clip weights cached here: none;" in str(error.value)
