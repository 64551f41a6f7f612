"""Fast checks of the bench building blocks: no sshd, no TensorFlow. The second half feeds them
hostile and broken input (ssh config, known_hosts, keys, ports, device protocol lines)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import typer

import edgeq
from edgeq.remote import CommandResult, command_error, describe_command, tail
from edgeq.remote import device_script as ds
from edgeq.cli.bench import parse_threads
from edgeq.remote.report import BenchReport, BenchResult, DeviceInfo, compare_outputs, render_table, with_comparisons
from edgeq.remote.ssh import split_host
from edgeq.remote.ssh_config import load_known_hosts, resolve_target
from edgeq.errors import RemoteError, ToolMissingError, UserError
from edgeq.text import one_line, printable


@pytest.mark.parametrize("spec, expected", [
    ("pi", (None, "pi", None)),
    ("me@pi", ("me", "pi", None)),
    ("me@10.0.0.2:2222", ("me", "10.0.0.2", 2222)),
    ("[fe80::1]:22", (None, "fe80::1", 22)),
    ("fe80::1", (None, "fe80::1", None)),
])
def test_split_host(spec: str, expected: tuple) -> None:
    assert split_host(spec) == expected


def test_split_host_rejects_garbage() -> None:
    with pytest.raises(UserError):
        split_host("pi:ssh")


def test_parse_threads() -> None:
    assert parse_threads("1,2,4") == (1, 2, 4)
    for bad in ("", "0", "a,b", "2,-1"):
        with pytest.raises(typer.BadParameter):
            parse_threads(bad)


def _probe(**changes: object) -> CommandResult:
    data = {"python": "3.11.2", "executable": "/usr/bin/python3", "system": "Linux", "release": "6.1",
            "machine": "aarch64", "cores": 4, "cpu": "Raspberry Pi 4 Model B", "mem_total_bytes": 4 << 30,
            "modules": {"ai_edge_litert": None, "tflite_runtime": "2.14.0", "tensorflow": None, "numpy": "1.26.4"}}
    data.update(changes)
    return CommandResult("probe", ds.PROBE_PREFIX + json.dumps(data) + "\n", "", 0)


def test_probe_parsing_picks_the_available_interpreter() -> None:
    info = DeviceInfo.from_probe("pi", "me@pi:22", "python3", _probe())
    assert (info.interpreter, info.interpreter_version, info.machine) == ("tflite_runtime", "2.14.0", "aarch64")
    assert "Raspberry Pi 4" in info.summary()


@pytest.mark.parametrize("result, needle", [
    (CommandResult("probe", "EDGEQ-NO-PYTHON\n", "", 0), "was not found"),
    (_probe(python="3.7.3"), "too old"),
    (_probe(modules={"numpy": None}), "numpy is not installed"),
    (_probe(modules={"numpy": "1.26", "ai_edge_litert": None}), "no TFLite interpreter"),
])
def test_probe_refusals_say_what_to_install(result: CommandResult, needle: str) -> None:
    with pytest.raises(ToolMissingError) as caught:
        DeviceInfo.from_probe("pi", "me@pi:22", "python3", result)
    assert needle in caught.value.message
    assert caught.value.exit_code == 2 and caught.value.hint


def test_probe_code_runs_here_and_is_python2_syntax_free_of_fstrings() -> None:
    assert "f\"" not in ds.PROBE_CODE and "f'" not in ds.PROBE_CODE
    namespace: dict = {}
    exec(compile(ds.PROBE_CODE, "probe", "exec"), namespace)  # prints one line; must not raise


def test_command_error_shows_command_and_tail() -> None:
    result = CommandResult("python3 x.py", "", "EDGEQ-PROGRESS {}\n" + "\n".join(f"l{i}" for i in range(40)), 3)
    error = command_error("me@pi:22", result)
    assert isinstance(error, RemoteError)
    assert "python3 x.py" in error.message and "status 3" in error.message
    assert "l39" in error.message and "l5\n" not in error.message and "PROGRESS" not in error.message
    assert "signal" in command_error("h", dataclasses.replace(result, exit_status=-1)).message
    assert tail(b"", b"only stdout") == "  | only stdout"


def _encoded(array: np.ndarray) -> dict:
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "data_b64": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()}


def test_compare_outputs_tolerances() -> None:
    ref = np.array([[10, 200, 3]], dtype=np.uint8)
    assert compare_outputs([ref], [_encoded(ref + np.array([[2, 0, 0]], np.uint8))]) == (True, 2.0)
    assert compare_outputs([ref], [_encoded(ref + np.array([[3, 0, 0]], np.uint8))])[0] is False
    f = np.array([0.5, -2.0], dtype=np.float32)
    assert compare_outputs([f], [_encoded(f + np.float32(1e-4))])[0] is True
    assert compare_outputs([f], [_encoded(f + np.float32(1e-2))])[0] is False
    assert compare_outputs([f], [_encoded(f.reshape(2, 1))]) == (False, None)
    assert compare_outputs([f], [{"sha256": ds.hashlib_sha256(f)}]) == (True, 0.0)


def test_fixed_input_is_deterministic_and_in_range() -> None:
    a = ds.fixed_input([1, 4, 4, 3], np.uint8)
    assert a.dtype == np.uint8 and np.array_equal(a, ds.fixed_input([1, 4, 4, 3], np.uint8))
    assert ds.fixed_input([8], np.int8).min() >= -128
    assert 0.0 <= ds.fixed_input([8], np.float32).min() and ds.fixed_input([8], np.float32).max() <= 1.0


def _result(model: str, quant: str, p50: float, size: int, threads: int = 1) -> BenchResult:
    return BenchResult(
        host="pi", model=model, model_size_bytes=size, quantization=quant, threads=threads, xnnpack=True,
        runs=100, warmup=10, min_ms=p50, mean_ms=p50, p50_ms=p50, p90_ms=p50, p99_ms=p50, max_ms=p50, std_ms=0.0,
        init_ms=1.0, first_inference_ms=1.0, import_ms=100.0, peak_rss_bytes=50 << 20, interpreter="ai_edge_litert",
        interpreter_version="2.3.0", delegate="xnnpack", output_match=True, output_max_abs_diff=0.0)


def test_ratios_and_agreement_are_relative_to_the_float_model() -> None:
    q, f = _result("q.tflite", "int8", 2.0, 250), _result("f.tflite", "float", 8.0, 1000)
    out = with_comparisons([q, f], {id(q): [1, 2, 3, 4], id(f): [1, 2, 3, 0]})
    assert (out[0].latency_ratio, out[0].size_ratio, out[0].agreement) == (0.25, 0.25, 0.75)
    assert out[1].baseline_model == "f.tflite" and out[1].latency_ratio == 1.0


def test_json_envelope_contract() -> None:
    report = BenchReport((_result("[q].tflite", "int8", 2.0, 250),), ())
    doc = json.loads(json.dumps(report.to_dict()))
    assert (doc["schema_version"], doc["kind"], doc["edgeq_version"]) == (1, "bench", edgeq.__version__)
    for key in ("host", "model", "threads", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "init_ms", "peak_rss_bytes",
                "interpreter"):
        assert key in doc["results"][0]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_table(report))
    assert "[q].tflite" in console.export_text()  # brackets are text, not markup


def test_edgeq_bench_stays_callable_after_submodule_imports() -> None:
    import edgeq.remote.ssh  # noqa: F401  (binds the package to edgeq.remote, not to edgeq.bench)

    assert callable(edgeq.bench)
    with pytest.raises(UserError):
        edgeq.bench([], hosts=["local"])


def test_command_adapter_passes_options_and_flags_mismatches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The typer adapter alone: typed keyword arguments in, JSON on stdout, warnings on stderr."""
    from typer.testing import CliRunner

    import edgeq.remote.runner as runner
    from edgeq.cli.bench import bench_command

    seen: dict = {}
    bad = dataclasses.replace(_result("q.tflite", "int8", 2.0, 250), output_match=False, output_max_abs_diff=7.0)

    def fake_bench(models: list, **options: object) -> BenchReport:
        seen.update(options, models=models)
        return BenchReport((bad,), ())

    monkeypatch.setattr(runner, "bench", fake_bench)
    app = typer.Typer()
    app.command("bench")(bench_command)
    app.command("other")(lambda: None)  # two commands: "bench" stays a subcommand, as in edgeq.cli.app
    done = CliRunner().invoke(app, ["bench", "q.tflite", "--host", "pi", "-H", "local", "--threads", "1,4",
                                    "--no-xnnpack", "--timeout", "3", "--json"])
    assert done.exit_code == 0, done.output
    assert seen["hosts"] == ["pi", "local"] and seen["threads"] == (1, 4) and seen["xnnpack"] is False
    assert seen["connect_timeout"] == 3.0 and seen["progress"] is True
    assert json.loads(done.stdout)["results"][0]["output_match"] is False


# ----------------------------------------------------------------------------- hostile input
ESC = "\x1b]0;title\x07\x1b[2J\x1b[1;31m"


@pytest.mark.parametrize("text, expected", [
    ("plain text", "plain text"),
    (f"{ESC}red\x1b[0m", "red"),
    ("a\rb\x08c\x07d\x00e\x7f\x85f", "abcdef"),
    ("8-bit \x9b2Jcsi", "8-bit csi"),
    ("two\nlines\tand tab", "two\nlines\tand tab"),
    ("bidi \u202eevil\u2066", "bidi evil"),
    ("café 中文 ✓", "café 中文 ✓"),
    ("\x1bcreset \x1b]52;c;cHduZWQ=\x07clip", "reset clip"),
])
def test_printable_strips_escapes_and_controls(text: str, expected: str) -> None:
    assert printable(text) == expected


def test_one_line_and_non_str() -> None:
    assert one_line("a\nb\tc\r d" + "x" * 300, 20) == "a b c dxxxxxxxxxxxx…"
    assert printable(12) == "12" and printable(None) == "None"


@pytest.mark.parametrize("spec, needle", [
    ("h:99999", "invalid port 99999"), ("h:0", "invalid port 0"), ("h:65536", "invalid port 65536"),
    ("[::1]:70000", "invalid port 70000"), ("h:\u00b2", "cannot parse host"), ("h:", "cannot parse host"),
    ("me@:22", "cannot parse host"),
])
def test_split_host_refuses_bad_ports(spec: str, needle: str) -> None:
    with pytest.raises(UserError) as caught:
        split_host(spec)
    assert needle in caught.value.message and caught.value.exit_code == 2
    if "port" in needle:
        assert "1-65535" in (caught.value.hint or "")


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_cli_port_out_of_range_is_refused_not_replaced(port: int, tmp_path: Path) -> None:
    """``--port 0`` used to become 22 silently (0 is falsy)."""
    with pytest.raises(UserError, match=rf"invalid port {port} \(--port\)"):
        resolve_target("pi", port=port, ssh_config=Path(os.devnull), known_hosts=tmp_path / "kh")


def test_port_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host pi\n  Port 2200\n")
    kh = tmp_path / "kh"
    assert resolve_target("pi", ssh_config=config, known_hosts=kh).port == 2200
    assert resolve_target("pi", port=2300, ssh_config=config, known_hosts=kh).port == 2300
    assert resolve_target("pi:2400", port=2300, ssh_config=config, known_hosts=kh).port == 2400


@pytest.mark.parametrize("line, needle", [
    ("Port abc", "invalid Port 'abc', expected a port number 1-65535"),
    ("Port 0", "invalid Port '0'"),
    ("Port 99999", "invalid Port '99999'"),
    ("ConnectTimeout soon", "invalid ConnectTimeout 'soon', expected seconds > 0"),
    ("ConnectTimeout 0", "invalid ConnectTimeout '0'"),
    ("ServerAliveInterval -5", "invalid ServerAliveInterval '-5'"),
])
def test_bad_ssh_config_values_name_the_file_and_setting(line: str, needle: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(f"Host pi\n  HostName 10.0.0.2\n  {line}\n")
    with pytest.raises(UserError) as caught:
        resolve_target("pi", ssh_config=config, known_hosts=tmp_path / "kh")
    assert needle in caught.value.message and str(config) in caught.value.message
    assert "fix or remove" in (caught.value.hint or "")


def test_binary_or_odd_ssh_config_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "config"
    binary.write_bytes(b"Host pi\n  Port \xff\xfe 22\n\x00\x01")
    with pytest.raises(UserError, match="is not a text file"):
        resolve_target("pi", ssh_config=binary, known_hosts=tmp_path / "kh")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(UserError, match="not a regular file"):
        resolve_target("pi", ssh_config=fifo, known_hosts=tmp_path / "kh")


def test_known_hosts_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="known_hosts file .* is not a regular file"):
        resolve_target("pi", ssh_config=Path(os.devnull), known_hosts=tmp_path)


@pytest.mark.parametrize("data, line", [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), 1),
    (b"host ssh-ed25519 AAAA\nother ssh-rsa AAAA\x00\n", 2),
    (b"# comment\n\n\xc3\x28 ssh-ed25519 AAAA\n", 3),
])
def test_binary_known_hosts_is_a_user_error(data: bytes, line: int, tmp_path: Path) -> None:
    import paramiko

    path = tmp_path / "known_hosts"
    path.write_bytes(data)
    with pytest.raises(UserError) as caught:
        load_known_hosts(paramiko.HostKeys(), path)
    assert f"{path} is not a text file (binary data on line {line})" in caught.value.message
    assert "--known-hosts" in (caught.value.hint or "")


def test_known_hosts_bad_lines_are_skipped_like_openssh(tmp_path: Path) -> None:
    import paramiko

    key = paramiko.RSAKey.generate(1024)
    path = tmp_path / "known_hosts"
    path.write_text("garbage\nbad ssh-ed25519 !!!notbase64!!!\nworse ssh-ed25519 AAAA\n"
                    f"@revoked x ssh-rsa {key.get_base64()}\n[pi]:2222,10.0.0.2 ssh-rsa {key.get_base64()}\n")
    keys = paramiko.HostKeys()
    load_known_hosts(keys, path)
    assert keys.lookup("[pi]:2222")["ssh-rsa"] == key and keys.lookup("10.0.0.2") is not None
    assert keys.lookup("bad") is None


@pytest.mark.parametrize("content, needle", [
    (b"\x00\x01binary\xff", "is not a text key file"),
    (None, "does not exist"),
])
def test_bad_identity_files_are_refused(content: bytes | None, needle: str, tmp_path: Path) -> None:
    key = tmp_path / "id_bad"
    if content is not None:
        key.write_bytes(content)
    with pytest.raises(UserError, match=needle):
        resolve_target("pi", identity=key, ssh_config=Path(os.devnull), known_hosts=tmp_path / "kh")
    config = tmp_path / "config"
    config.write_text(f"Host pi\n  IdentityFile {key}\n")
    if content is not None:  # a key the ssh config names is checked too (a missing one is skipped, as OpenSSH does)
        with pytest.raises(UserError, match=needle):
            resolve_target("pi", ssh_config=config, known_hosts=tmp_path / "kh")


def test_error_quotes_the_first_line_of_a_long_command_and_summarises_tracebacks() -> None:
    probe = f"mktemp -d x && python3 -c {shlex.quote(ds.PROBE_CODE)}"
    shown = describe_command(probe)
    assert shown.endswith("…") and "\n" not in shown and len(shown) <= 102 and "import json" not in shown
    stderr = ("Traceback (most recent call last):\n  File \"/tmp/d/device_script.py\", line 9, in main\n"
              "    boom()\nValueError: bad \x1b[2Jthing\n")
    error = command_error("me@pi:22", CommandResult(probe, "", stderr, 1))
    assert "Traceback" not in error.message and "\x1b" not in error.message
    assert 'Python error on the device: ValueError: bad thing (File "/tmp/d/device_script.py", line 9' in error.message
    assert len(error.message.splitlines()) == 2



def test_table_renders_a_shape_mismatch() -> None:
    from rich.console import Console

    bad = dataclasses.replace(_result("q\x1b[2J.tflite", "int8", 2.0, 250), output_match=False,
                              output_max_abs_diff=None)
    console = Console(width=200, record=True)
    console.print(render_table(BenchReport((bad,), ())))
    text = console.export_text()
    assert "MISMATCH shape" in text and "\x1b" not in text and "q.tflite" in text
