"""The tree writer: manifest rules, dry run, staging, path safety, one Jinja environment."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest

from edgeq.firmware.jinja import FILTERS, environment, render
from edgeq.firmware.scaffold import MANIFEST, GeneratedFile, read_manifest, render_tree, write_tree
from edgeq.errors import OutputExistsError


def files(model: bytes = b"m1", scaffold: bytes = b"s1") -> list[GeneratedFile]:
    return [GeneratedFile("src/model.h", model, "model"), GeneratedFile("CMakeLists.txt", scaffold, "scaffold")]


def actions(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {a.path: a.action for a in result.actions}


def test_create_then_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert actions(write_tree(out, files())) == {"src/model.h": "create", "CMakeLists.txt": "create"}
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "edgeq-manifest" and set(doc["files"]) == {"src/model.h", "CMakeLists.txt"}
    assert doc["roles"] == {"src/model.h": "model", "CMakeLists.txt": "scaffold"}
    assert set(actions(write_tree(out, files())).values()) == {"unchanged"}
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_model_refreshed_scaffold_kept(tmp_path: Path) -> None:
    write_tree(tmp_path, files())
    (tmp_path / "CMakeLists.txt").write_bytes(b"user")
    (tmp_path / "src" / "model.h").write_bytes(b"user edit of a generated source")
    result = write_tree(tmp_path, files(b"m2", b"s2"))
    assert actions(result) == {"src/model.h": "update", "CMakeLists.txt": "kept"} and result.kept == ("CMakeLists.txt",)
    assert (tmp_path / "CMakeLists.txt").read_bytes() == b"user" and (tmp_path / "src/model.h").read_bytes() == b"m2"
    # Still the user's file on the next run; --force replaces it.
    assert actions(write_tree(tmp_path, files(b"m2", b"s3")))["CMakeLists.txt"] == "kept"
    assert actions(write_tree(tmp_path, files(b"m2", b"s3"), force=True))["CMakeLists.txt"] == "overwrite"
    assert actions(write_tree(tmp_path, files(b"m2", b"s4")))["CMakeLists.txt"] == "update"


def test_untouched_scaffold_is_updated(tmp_path: Path) -> None:
    write_tree(tmp_path, files())
    assert actions(write_tree(tmp_path, files(b"m1", b"s2")))["CMakeLists.txt"] == "update"


def test_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.h").write_bytes(b"theirs")
    (tmp_path / "CMakeLists.txt").write_bytes(b"theirs too")
    with pytest.raises(OutputExistsError, match="model.h"):
        write_tree(tmp_path, files())
    assert not (tmp_path / MANIFEST).exists()
    assert actions(write_tree(tmp_path, files(), force=True)) == {"src/model.h": "overwrite", "CMakeLists.txt": "overwrite"}


def test_dry_run(tmp_path: Path) -> None:
    result = write_tree(tmp_path / "new", files(), dry_run=True)
    assert result.dry_run and result.written == ("src/model.h", "CMakeLists.txt") and not (tmp_path / "new").exists()


def test_manifest_keeps_other_entries(tmp_path: Path) -> None:
    write_tree(tmp_path, [GeneratedFile("a.h", b"a", "model")])
    write_tree(tmp_path, [GeneratedFile("b.h", b"b", "model")])
    assert set(read_manifest(tmp_path)) == {"a.h", "b.h"}


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "", MANIFEST])
def test_paths_stay_inside(bad: str) -> None:
    with pytest.raises(ValueError):
        GeneratedFile(bad, b"")


def test_out_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputExistsError):
        write_tree(tmp_path / "f", files())


def test_environment_is_strict(tmp_path: Path) -> None:
    env = environment()
    assert env.undefined is jinja2.StrictUndefined and env.keep_trailing_newline and not env.autoescape
    assert set(FILTERS) <= set(env.filters)
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    assert env.from_string("{{ x | c_ident }} {{ y | c_string }} {{ 0.5 | c_float }}").render(x="3 d", y='a"b') == 'm_3_d "a\\"b" 0.5f'
    with pytest.raises(jinja2.UndefinedError):
        render("emit/model_settings.h.j2", {})


def test_render_tree_skips_empty_templates() -> None:
    from edgeq.firmware.targets import load_target

    ctx_common = {"edgeq_version": "t", "source_name": "m.tflite", "model_sha256": "0" * 64, "target": load_target("host"), "cross": False}
    out = render_tree("cmake-tflm/cmake", ctx_common)
    assert out == []  # the toolchain file renders empty for the host: not written
    cross = render_tree("cmake-tflm/cmake", {**ctx_common, "target": load_target("cortex-m4"), "cross": True}, dest="x")
    assert [f.path for f in cross] == ["x/arm-none-eabi.cmake"]
