"""edgeq.toml / [tool.edgeq]: defaults for every command, named models, precedence, checked keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeq.cli.example import example_files

try:
    from conftest import assert_clean_error, run_edgeq
except ImportError:  # tests/ is a package
    from tests.conftest import assert_clean_error, run_edgeq

TWO_MODELS = """\
[defaults]
target = "cortex-m4"
max-accuracy-drop = 5.0

[models.kws]
path = "models/kws.keras"
calibration = "data/calib.npy"
eval-data = "data/eval.npz"
out = "firmware/kws"

[models.vww]
path = "models/vww.keras"
calibration = "data/calib.npy"
eval-data = "data/eval.npz"
"""


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A firmware repo with two models and their data, as a user lays it out."""
    model, calib, ev = example_files()
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(model, tmp_path / "models" / "kws.keras")
    shutil.copy(model, tmp_path / "models" / "vww.keras")
    shutil.copy(calib, tmp_path / "data" / "calib.npy")
    shutil.copy(ev, tmp_path / "data" / "eval.npz")
    (tmp_path / "edgeq.toml").write_text(TWO_MODELS)
    (tmp_path / "src" / "deep").mkdir(parents=True)
    return tmp_path


def test_build_without_a_model_builds_every_model_of_the_file(repo: Path) -> None:
    r = run_edgeq("build", "--json", cwd=repo / "src" / "deep")  # found from a subfolder, paths relative to the file
    assert r.code == 0, r.stderr
    doc = r.json
    assert doc["kind"] == "build-set" and doc["exit_code"] == 0
    assert [m["name"] for m in doc["models"]] == ["kws", "vww"]
    kws, vww = (m["report"] for m in doc["models"])
    assert kws["target"]["name"] == "cortex-m4" == vww["target"]["name"]  # [defaults]
    assert Path(kws["out_dir"]) == repo / "firmware" / "kws"  # [models.kws] out
    assert Path(vww["out_dir"]) == repo / "build" / "vww"  # default: build/<name> beside the file
    assert (repo / "firmware" / "kws" / "src" / "kws_model_data.cc").is_file()  # --name defaults to the table name
    assert (repo / "build" / "vww" / "src" / "vww_model_data.cc").is_file()
    assert kws["validation"]["quantized_accuracy"] > 0.9
    # A table, not JSON, without --json: one summary row per model.
    r = run_edgeq("build", "vww", "--force", cwd=repo)
    assert r.code == 0, r.stderr
    assert "vww" in r.stdout and "ok" in r.stdout and "kws" not in r.stdout.split("model")[-1]


def test_command_line_overrides_the_file_and_one_failure_gives_the_worst_exit_code(repo: Path) -> None:
    r = run_edgeq("build", "kws", "--target", "host", "--json", cwd=repo)
    assert r.code == 0, r.stderr
    (only,) = r.json["models"]
    assert only["report"]["target"]["name"] == "host"  # the command line beats [defaults]
    # Break one model: the other still builds, the exit code is the worst one, both are reported.
    (repo / "edgeq.toml").write_text(TWO_MODELS.replace('path = "models/vww.keras"', 'path = "models/missing.keras"'))
    r = run_edgeq("build", "--force", "--json", cwd=repo)
    assert r.code == 2, r.stderr
    by_name = {m["name"]: m for m in r.json["models"]}
    assert by_name["kws"]["exit_code"] == 0 and by_name["vww"]["exit_code"] == 2
    assert "missing.keras" in by_name["vww"]["error"]["message"]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("text, needles", [
    (TWO_MODELS.replace("calibration = \"data/calib.npy\"\neval-data = \"data/eval.npz\"\nout",
                        "calbration = \"data/calib.npy\"\neval-data = \"data/eval.npz\"\nout"),
     ["edgeq.toml:7", "unknown key 'calbration'", "did you mean 'calibration'"]),
    (TWO_MODELS.replace("max-accuracy-drop = 5.0", "max-accuracy-drop = \"five\""),
     ["edgeq.toml:3", "'max-accuracy-drop'", "must be a number"]),
    (TWO_MODELS.replace("target = \"cortex-m4\"", "targett = \"cortex-m4\""),
     ["edgeq.toml:2", "unknown key 'targett'", "did you mean 'target'"]),
    (TWO_MODELS + "\n[model.extra]\npath = \"x\"\n", ["unknown table or key 'model'"]),
    (TWO_MODELS.replace('path = "models/vww.keras"\n', ""), ["[models.vww] needs a 'path'"]),
    (TWO_MODELS.replace("[defaults]", "[defaults"), ["invalid TOML", "line 1"]),
])
def test_a_bad_file_is_one_error_with_its_line(repo: Path, text: str, needles: list[str]) -> None:
    (repo / "edgeq.toml").write_text(text)
    for args in (["build"], ["targets"]):  # every command refuses, not only build
        assert_clean_error(run_edgeq(*args, cwd=repo), *needles)
    assert run_edgeq("--help", cwd=repo).code == 0  # help still works in a broken repo


def test_defaults_reach_other_commands_and_pyproject_tool_table_works(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "fw"\n\n[tool.edgeq.defaults]\njson = true\n')
    r = run_edgeq("targets", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "targets"  # [defaults] json = true applied to `edgeq targets`
    r = run_edgeq("targets", cwd=tmp_path, env={"EDGEQ_CONFIG": "none"})
    assert r.code == 0 and not r.stdout.lstrip().startswith("{")


def test_config_command_shows_each_value_and_where_it_came_from(repo: Path) -> None:
    r = run_edgeq("config", "--json", cwd=repo / "src")
    assert r.code == 0, r.stderr
    doc = r.json
    assert Path(doc["file"]) == repo / "edgeq.toml"
    kws = next(m for m in doc["models"] if m["model"] == "kws")["options"]
    assert kws["target"] == {"value": "cortex-m4", "from": "edgeq.toml:2 [defaults]"}
    assert kws["calibration"]["from"] == "edgeq.toml:7 [models.kws]"
    assert kws["calibration"]["value"] == str(repo / "data" / "calib.npy")
    assert kws["mode"] == {"value": "int8", "from": "built-in default"}
    r = run_edgeq("config", "vww", cwd=repo)
    assert r.code == 0 and "edgeq.toml:2 [defaults]" in r.stdout and "build/vww" in r.stdout
    assert_clean_error(run_edgeq("config", "nope", cwd=repo), "no model 'nope'", "kws, vww")
