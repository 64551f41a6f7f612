"""``edgeq emit``'s fast path past typer: the same values as typer, or typer itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edgeq.cli import fastpath as cli_fastpath
from edgeq.cli.emit import emit_command
from tests.conftest import run_edgeq

PLAIN = [
    ["m.tflite", "--out", "o"],
    ["m.tflite", "-o", "o", "--json"],
    ["--out=o", "m.tflite", "--name", "my net", "--lang", "C"],
    ["m.tflite", "--out", "o", "--lang=cpp", "--namespace", "ns", "--section", ".rodata.m"],
    ["m.tflite", "--out", "o", "--arena-bytes", "2208", "--target", "cortex-m55", "--force", "--dry-run", "--debug"],
    ["m.tflite", "--out", "o", "--arena-bytes=007", "--targets-dir", "t", "--labels", "l.txt"],
    ["m.tflite", "--out", "o", "--lang", "CPP", "--name", "ünïcödé $(x)"],
]
NOT_PLAIN = [
    [],  # missing MODEL and --out: typer words the error
    ["m.tflite"],
    ["m.tflite", "--out"],
    ["m.tflite", "--out", "o", "--help"],
    ["m.tflite", "--out", "o", "--out", "p"],  # repeated: typer's last-wins
    ["m.tflite", "--out", "o", "--lang", "rust"],
    ["m.tflite", "--out", "o", "--arena-bytes", "0"],
    ["m.tflite", "--out", "o", "--arena-bytes", "1e3"],
    ["m.tflite", "--out", "o", "--name", "-x"],
    ["m.tflite", "--out", "o", "--name", ""],
    ["m.tflite", "--out", "o", "--force=1"],
    ["m.tflite", "--out", "o", "--unknown"],
    ["m.tflite", "--out", "o", "-f"],
    ["m.tflite", "--out", "o", "extra"],
    ["m.tflite", "--out", "o", "--"],
    ["-", "--out", "o"],
    ["m.tflite", "-oo"],
]


def _typer_values(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What typer passes to ``emit_command`` (captured through ``edgeq.firmware.emit.emit``)."""
    seen: dict[str, Any] = {}

    def fake_emit(model: Path, **kw: Any) -> Any:
        seen.update(model=model, **kw)
        raise typer.Exit(0)

    import edgeq.firmware.emit

    monkeypatch.setattr(edgeq.firmware.emit, "emit", fake_emit)
    app = typer.Typer()
    app.command("emit")(emit_command)
    app.command("other")(lambda: None)  # a group, like the real app
    result = CliRunner().invoke(app, ["emit", *args])
    assert result.exit_code == 0, result.output
    return seen


@pytest.mark.parametrize("args", PLAIN, ids=" ".join)
def test_fast_path_passes_what_typer_passes(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    values = cli_fastpath.parse(emit_command, args)
    assert values is not None
    expected = _typer_values(args, monkeypatch)
    seen: dict[str, Any] = {}

    def fake_emit(model: Path, **kw: Any) -> Any:
        seen.update(model=model, **kw)
        raise typer.Exit(0)

    import edgeq.firmware.emit

    monkeypatch.setattr(edgeq.firmware.emit, "emit", fake_emit)
    with pytest.raises(SystemExit) as exit_info:
        cli_fastpath.run(emit_command, values)
    assert exit_info.value.code == 0
    assert seen == expected


@pytest.mark.parametrize("args", NOT_PLAIN, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert cli_fastpath.parse(emit_command, args) is None


def test_unreadable_path_is_left_to_typer(tmp_path: Path) -> None:
    secret = tmp_path / "secret.tflite"
    secret.write_bytes(b"x")
    secret.chmod(0)
    try:
        import os

        if os.access(secret, os.R_OK):
            pytest.skip("running as a user who can read anything (root)")
        assert cli_fastpath.parse(emit_command, [str(secret), "--out", "o"]) is None
    finally:
        secret.chmod(0o600)


def test_commands_with_unmodelled_options_are_never_fast_pathed() -> None:
    from typing import Annotated

    def cb(value: str) -> str:
        return value

    def command(name: Annotated[str, typer.Option("--name", callback=cb)] = "a") -> None:
        pass

    def counted(v: Annotated[int, typer.Option("-v", count=True)] = 0) -> None:
        pass

    def unannotated(name: str = "a") -> None:
        pass

    for fn in (command, counted, unannotated):
        assert cli_fastpath.parse(fn, []) is None


def test_real_process_fast_and_typer_paths_agree(tmp_path: Path) -> None:
    """The same emit through the fast path and through typer (``--out`` repeated forces
    typer): same files, same JSON; errors keep their wording and exit codes."""
    from tests.codegen_models import tiny_cnn

    model = tiny_cnn()
    fast = run_edgeq("emit", model, "--out", tmp_path / "a", "--arena-bytes", "2208", "--json", "--name", "t")
    slow = run_edgeq("emit", model, "--out", tmp_path / "x", "--out", tmp_path / "b", "--arena-bytes", "2208", "--json", "--name", "t")
    assert fast.code == slow.code == 0, (fast.stderr, slow.stderr)
    doc_a, doc_b = json.loads(fast.stdout), json.loads(slow.stdout)
    doc_a["out_dir"] = doc_b["out_dir"] = doc_a["write"]["out_dir"] = doc_b["write"]["out_dir"] = ""
    assert doc_a == doc_b
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    missing = run_edgeq("emit", tmp_path / "nope.tflite", "--out", tmp_path / "c")
    assert missing.code == 2 and "no such model file" in missing.stderr and "Traceback" not in missing.stderr
    bad_lang = run_edgeq("emit", model, "--out", tmp_path / "c", "--lang", "rust")  # typer's own error
    assert bad_lang.code == 2 and "rust" in bad_lang.stderr
    assert not (tmp_path / "c").exists()


def test_fast_path_does_not_import_pydantic(tmp_path: Path) -> None:
    import subprocess

    from tests.codegen_models import tiny_cnn

    code = (
        "import sys\nfrom edgeq.cli.app import main\n"
        f"try:\n    main(['emit', {str(tiny_cnn())!r}, '--out', {str(tmp_path / 'o')!r}, '--arena-bytes', '2208', '--json'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'pydantic' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
