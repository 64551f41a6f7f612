"""``edgeq bench`` against a device that speaks the protocol wrongly, floods or attacks the terminal.

The "device Python" is a fake: a small executable script passed as ``--python`` that ignores
the real device script and prints what a broken or hostile device might (malformed PID,
progress and result lines, bad JSON, huge lines, Python tracebacks, escape sequences),
or hands over to the real Python for the parts it does not fake. Each case runs through
the real CLI, over a real sshd on 127.0.0.1 and with ``--host local``, and must end in
exit 2 with one readable error line (or a clean result), no traceback, no control
character on stderr, and nothing left running or on the device.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

try:
    from sshd import Sshd, SshdFactory, sshd_factory  # noqa: F401  (fixture)
except ImportError:  # tests/ is a package
    from tests.sshd import Sshd, SshdFactory, sshd_factory  # noqa: F401
from edgeq.remote import CommandResult
from edgeq.remote import device_script as ds
from edgeq.remote.capture import LINE_LIMIT, STDERR_LIMIT, STDOUT_LIMIT, Capture, OutputLimitExceeded
from edgeq.remote.protocol import parse_device_document, parse_pid, parse_progress, probe_document
from edgeq.remote.report import DeviceInfo
from edgeq.errors import RemoteError, UserError
from tests.test_bench_remote import CLI, ROOT, _assert_clean, device_pids

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # \t and \n are allowed
EVIL = "\x1b]0;pwned-title\x07\x1b[2J\x1b[31m"  # retitle the window, clear the screen, turn red

# The fake's preamble: helpers for the case bodies below. `probe` is true when edgeq runs the
# probe (`python -c CODE`); `real()` hands over to the real Python with the same arguments.
PREAMBLE = """\
#!{python}
import json, os, signal, subprocess, sys, time
REAL = {python!r}
probe = sys.argv[1:2] == ["-c"]
def real():
    os.execv(REAL, [REAL] + sys.argv[1:])
def out(text):
    sys.stdout.write(text + "\\n"); sys.stdout.flush()
def err(text):
    sys.stderr.write(text + "\\n"); sys.stderr.flush()
def pid():
    err("EDGEQ-PID %d" % os.getpid())
def real_probe():
    line = subprocess.run([REAL] + sys.argv[1:], capture_output=True, text=True).stdout.splitlines()[-1]
    return json.loads(line[len("EDGEQ-PROBE "):])
VALID = {{"min_ms": 1.0, "mean_ms": 1.0, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0,
         "std_ms": 0.0, "init_ms": 1.0, "first_inference_ms": 1.0, "import_ms": 1.0, "peak_rss_bytes": 1 << 24,
         "interpreter": "ai_edge_litert", "interpreter_version": "1.0", "delegate": "none", "outputs": [],
         "eval": None, "runs": 1, "warmup": 0, "threads": 1, "xnnpack": True}}
def result(**changes):
    doc = dict(VALID); doc.update(changes); out(json.dumps(doc))
if probe != PROBE_CASE:  # a run case gets the real probe, a probe case the real device script
    real()
"""


class Case(NamedTuple):
    body: str  # Python run by the fake device after PREAMBLE
    code: int  # expected exit status of edgeq
    needle: str  # expected in stderr (case-insensitive)
    probe: bool = False  # the body fakes the probe (else the probe is real)


RUN_CASES = {
    "pid not a number": Case('err("EDGEQ-PID abc")', 2, "malformed PID line"),
    "pid negative": Case('err("EDGEQ-PID -1"); time.sleep(0.5)', 2, "malformed PID line"),
    "pid huge line": Case('err("EDGEQ-PID " + "9" * 200000)', 2, "malformed PID line"),
    "progress garbage is ignored": Case(
        'pid(); [err("EDGEQ-PROGRESS " + p) for p in ("{not json", "[]", \'{"phase": "timed", "done": "x"}\', '
        '\'{"phase": "\\x1b[2Jevil", "done": 1}\', \'{"phase": "timed", "done": 99999999999}\', "[" * 100000)]; '
        'real()', 0, ""),
    "result not json": Case('pid(); out("{not json")', 2, "not valid JSON"),
    "result truncated": Case('pid(); out(json.dumps(VALID)[:60])', 2, "truncated"),
    "result missing field": Case('pid(); VALID.pop("p50_ms"); result()', 2, "'p50_ms' is missing"),
    "result wrong type": Case('pid(); result(p50_ms="fast")', 2, "'p50_ms' is str"),
    "result nan": Case('pid(); result(p90_ms=float("nan"))', 2, "finite number"),
    "result huge integer": Case('pid(); result(peak_rss_bytes=10 ** 40)', 2, "expected a count"),
    "result nested too deep": Case('pid(); out(\'{"a": \' + "[" * 200000 + "]" * 200000 + "}")', 2, "too deeply"),
    "result extra keys are ignored": Case(
        'pid(); result(host="evil", model="evil", threads=64, output_match=True)', 0, "differs in shape"),
    "output dtype": Case('pid(); result(outputs=[{"dtype": "object", "shape": [1], "sha256": "0" * 64}])', 2,
                         "not a numeric tensor type"),
    "output base64": Case('pid(); result(outputs=[{"dtype": "uint8", "shape": [3], "sha256": "0" * 64, '
                          '"data_b64": "!!!!"}])', 2, "not base64"),
    "output size": Case('pid(); result(outputs=[{"dtype": "float32", "shape": [1000], "sha256": "0" * 64, '
                        '"data_b64": "AAAAAA=="}])', 2, "holds 4 bytes"),
    "eval malformed": Case('pid(); result(eval={"samples": 3, "predictions": "abc"})', 2, "'predictions' is str"),
    "error not an object": Case('pid(); out(json.dumps({"error": "boom"})); sys.exit(3)', 2,
                                "malformed error report"),
    "error wrong types": Case('pid(); out(json.dumps({"error": {"kind": ["x"], "message": 5}})); sys.exit(3)', 2,
                              "malformed error report"),
    "error with escapes": Case(
        f'pid(); out(json.dumps({{"error": {{"kind": "model", "message": {EVIL!r} + "bad model\\rHIDDEN"}}}})); '
        'sys.exit(3)', 2, "bad model"),
    "no result": Case("pid()", 2, "without printing a result"),
    "binary output": Case('pid(); sys.stdout.buffer.write(b"\\xff\\xfe\\x00\\x1b[2J\\n{\\xff\\x1b[2J\\n")', 2,
                          "not valid JSON"),
    "device traceback": Case(f'pid(); raise ValueError("boom " + {EVIL!r})', 2,
                             "Python error on the device: ValueError: boom"),
    "escapes on stderr": Case(f'pid(); err({EVIL!r} + "device says no\\x1bc\\x07"); sys.exit(5)', 2,
                              "status 5"),
    "huge stderr line": Case('pid(); err("x" * 500000); sys.exit(1)', 2, "status 1"),
    "stderr flood": Case('pid()\nfor _ in range(4000): err("spam " * 100)\ntime.sleep(5)', 2,
                         "more than 1 MiB to stderr"),
    "stdout flood": Case('pid()\nblock = "y" * (1 << 20)\nfor _ in range(48): sys.stdout.write(block)\n'
                         'sys.stdout.flush(); time.sleep(5)', 2, "more than 32 MiB to stdout"),
    "killed by a signal": Case("pid(); os.kill(os.getpid(), signal.SIGKILL)", 2, "signal"),
}
PROBE_CASES = {
    "probe escapes in device names": Case(
        f'd = real_probe(); d.update(system="Linux" + {EVIL!r}, cpu={EVIL!r} + "Evil CPU\\r\\u202e", '
        f'release="6.1\\n\\x1b]52;c;cHduZWQ=\\x07"); out("EDGEQ-PROBE " + json.dumps(d))', 0, "Evil CPU", True),
    "probe bad json": Case('out("EDGEQ-PROBE {oops")', 2, "probe answer is malformed", True),
    "probe wrong types": Case('out("EDGEQ-PROBE " + json.dumps({"python": 3, "modules": []}))', 2,
                              "probe answer is malformed", True),
    "probe no answer": Case("pass", 2, "printed no EDGEQ-PROBE line", True),
    "probe traceback": Case('raise KeyError("probe")', 2, "Python error on the device: KeyError", True),
    "probe stdout flood": Case('block = "z" * (1 << 20)\nfor _ in range(48): sys.stdout.write(block)\n'
                               'sys.stdout.flush(); time.sleep(5)', 2, "more than 32 MiB to stdout", True),
}
CASES = {**RUN_CASES, **PROBE_CASES}
# Over --host local, the cases that exercise the transport itself (capture, limits, PID lines,
# exit statuses, stderr text): parsing the result is the same code for both, run above over SSH.
LOCAL_CASES = ["pid not a number", "pid huge line", "progress garbage is ignored", "result truncated",
               "result nested too deep", "error with escapes", "no result", "binary output", "device traceback",
               "escapes on stderr", "huge stderr line", "stderr flood", "stdout flood", "killed by a signal",
               "probe escapes in device names", "probe bad json", "probe traceback", "probe stdout flood"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny float .tflite from the real converter (y = 2x + 1 on a [1, 4] input)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):  # type: ignore[no-untyped-def]
            return 2.0 * x + 1.0

    module = Affine()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    path = tmp_path_factory.mktemp("hostile-model") / "affine.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("EDGEQ_SSH_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def server(sshd_factory: SshdFactory) -> Iterator[Sshd]:
    server = sshd_factory.start()
    yield server
    assert server.leftovers() == []


def _fake_python(directory: Path, case: Case) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fake-python"
    path.write_text(PREAMBLE.replace("PROBE_CASE", str(case.probe)).format(python=sys.executable)
                    + textwrap.dedent(case.body) + "\n")
    path.chmod(0o755)
    return path


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI as a user runs it; rich's colour switched off so that any escape is a leak."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "CLICOLOR_FORCE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _pids_with(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _assert_no_process(mark: str) -> None:
    deadline = time.monotonic() + 10
    while _pids_with(mark):
        assert time.monotonic() < deadline, f"still running: {_pids_with(mark)}"
        time.sleep(0.05)


def _assert_readable(done: subprocess.CompletedProcess, case: Case) -> None:
    """The exit code, one error line naming the problem, no traceback, nothing a terminal would obey."""
    assert done.returncode == case.code, done.stderr
    for stream in (done.stderr, done.stdout):
        assert "Traceback" not in stream, stream
        assert not CONTROL.search(stream), repr(CONTROL.search(stream))
        assert "pwned" not in stream, stream  # the payload of an escape sequence goes with it
    assert case.needle.lower() in done.stderr.lower(), done.stderr
    if case.code == 2:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and len(errors[0]) < 600, done.stderr
        assert len(done.stderr.splitlines()) <= 30 and len(done.stderr) < 10_000, done.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_device_over_ssh(name: str, server: Sshd, model: Path, tmp_path: Path) -> None:
    case = CASES[name]
    fake = _fake_python(tmp_path / "fake", case)
    known = server.write_known_hosts(tmp_path / "known_hosts")
    done = _run("bench", str(model), "--host", "127.0.0.1", "--port", str(server.port), "--user", server.user,
                "--identity", str(server.identity), "--known-hosts", str(known), "--ssh-config", os.devnull,
                "--python", str(fake), "--runs", "5", "--warmup", "1")
    _assert_readable(done, case)
    _assert_clean(server)
    _assert_no_process(str(fake.parent))
    assert not device_pids(server)


@pytest.mark.parametrize("name", LOCAL_CASES)
def test_malformed_device_local(name: str, model: Path, tmp_path: Path) -> None:
    case = CASES[name]
    fake = _fake_python(tmp_path / "fake", case)
    done = _run("bench", str(model), "--host", "local", "--python", str(fake), "--runs", "5", "--warmup", "1")
    _assert_readable(done, case)
    _assert_no_process(str(fake.parent))


def test_result_from_a_lying_device_uses_the_host_settings(server: Sshd, model: Path, tmp_path: Path) -> None:
    """Extra keys in the result (host, model, threads) cannot override what the host asked for."""
    fake = _fake_python(tmp_path / "fake", RUN_CASES["result extra keys are ignored"])
    done = _run("bench", str(model), "--host", "local", "--python", str(fake), "--runs", "5", "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert (result["host"], result["model"], result["threads"], result["runs"]) == ("local", str(model), 1, 5)
    assert result["output_match"] is False  # no outputs shipped: not silently "ok"


def test_file_names_with_escape_sequences(model: Path, tmp_path: Path) -> None:
    """A model whose name carries escapes and rich markup: the table and the progress stay inert."""
    hostile = tmp_path / f"m{EVIL}[red][link=x]\u202e.tflite"  # escapes, rich markup, a bidi override
    shutil.copy(model, hostile)
    done = _run("bench", str(hostile), "--host", "local", "--runs", "5")
    assert done.returncode == 0, done.stderr
    assert "[red][link=x]" in done.stdout  # shown literally, not as markup
    for stream in (done.stdout, done.stderr):
        assert not CONTROL.search(stream) and "Traceback" not in stream, repr(stream)
    missing = _run("bench", str(tmp_path / f"no{EVIL}such.tflite"), "--host", "local")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not CONTROL.search(missing.stderr) and "pwned" not in missing.stderr, repr(missing.stderr)


@pytest.mark.parametrize("args, needle", [
    (["--host", "127.0.0.1:99999"], "invalid port 99999"),
    (["--host", "127.0.0.1:0"], "invalid port 0"),
    (["--host", "127.0.0.1", "--port", "0"], "invalid port 0 (--port)"),
    (["--host", "127.0.0.1", "--port", "70000"], "invalid port 70000 (--port)"),
])
def test_cli_refuses_invalid_ports(args: list[str], needle: str, model: Path, tmp_path: Path) -> None:
    done = _run("bench", str(model), *args, "--ssh-config", os.devnull, "--known-hosts", str(tmp_path / "kh"))
    assert done.returncode == 2 and needle in done.stderr and "1-65535" in done.stderr, done.stderr
    assert "refused" not in done.stderr and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- the same, one parser at a time
ESC = "\x1b]0;title\x07\x1b[2J\x1b[1;31m"


def _probe(**changes: object) -> CommandResult:
    data = {"python": "3.11.2", "executable": "/usr/bin/python3", "system": "Linux", "release": "6.1",
            "machine": "aarch64", "cores": 4, "cpu": "Cortex-A72", "mem_total_bytes": 4 << 30,
            "modules": {"ai_edge_litert": "2.3.0", "numpy": "1.26.4"}}
    data.update(changes)
    return CommandResult("probe", ds.PROBE_PREFIX + json.dumps(data) + "\n", "", 0)


def test_capture_bounds_memory() -> None:
    out = Capture("stdout", STDOUT_LIMIT)
    with pytest.raises(OutputLimitExceeded) as caught:
        for _ in range(40):
            out.feed(b"y" * (1 << 20))
    assert caught.value.stream == "stdout" and len(out.text()) <= STDOUT_LIMIT
    lines: list[str] = []
    err = Capture("stderr", STDERR_LIMIT, on_line=lines.append)
    err.feed(b"EDGEQ-PROGRESS {}\n" * 100_000)  # protocol lines are consumed, not kept: no limit
    err.feed(b"x" * (LINE_LIMIT * 4) + b"\nnext")
    err.finish()
    assert len(lines) == 100_002 and lines[-1] == "next" and lines[-2].endswith("[line truncated]")
    assert len(lines[-2]) < LINE_LIMIT + 100 and "PROGRESS" not in err.text()
    with pytest.raises(OutputLimitExceeded):
        err.feed(b"z" * STDERR_LIMIT)


@pytest.mark.parametrize("line", ["EDGEQ-PID abc", "EDGEQ-PID -1", "EDGEQ-PID 0", "EDGEQ-PID 1", "EDGEQ-PID ",
                                  "EDGEQ-PID 12 34", "EDGEQ-PID " + "9" * 5000, "EDGEQ-PID \u0663"])
def test_malformed_pid_lines(line: str) -> None:
    with pytest.raises(RemoteError, match="malformed PID line") as caught:
        parse_pid("pi", line)
    assert len(caught.value.message) < 300


def test_pid_and_progress_lines() -> None:
    assert parse_pid("pi", "EDGEQ-PID 4242") == 4242
    assert parse_progress('EDGEQ-PROGRESS {"phase": "timed", "done": 3, "total": 9}') == ("timed", 3)
    for bad in ("EDGEQ-PROGRESS {", "EDGEQ-PROGRESS []", 'EDGEQ-PROGRESS {"phase": "x", "done": 1}',
                'EDGEQ-PROGRESS {"phase": "eval", "done": true}', "EDGEQ-PROGRESS " + "[" * 100_000):
        assert parse_progress(bad) is None


def _doc(**changes: object) -> CommandResult:
    doc = {name: 1.0 for name in ("min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "std_ms", "init_ms",
                                  "first_inference_ms", "import_ms")}
    doc.update(peak_rss_bytes=1 << 20, interpreter="ai_edge_litert", interpreter_version="2.3", delegate="none",
               outputs=[], eval=None)
    doc.update(changes)
    return CommandResult("run", "\n" + json.dumps(doc) + "\n", "", 0)


@pytest.mark.parametrize("result, needle", [
    (CommandResult("run", "{", "", 0), "not valid JSON"),
    (CommandResult("run", '{"a": ' + "[" * 100_000, "", 0), "too deeply"),
    (CommandResult("run", "", "", 0), "without printing a result"),
    (CommandResult("run", "[1]\n", "", 0), "without printing a result"),
    (CommandResult("run", '{"a": 1' + "0" * 5000 + "}", "", 0), "not valid JSON"),
    (_doc(p50_ms="1"), "'p50_ms' is str"),
    (_doc(p50_ms=True), "'p50_ms' is bool"),
    (_doc(p50_ms=-1), "finite number >= 0"),
    (_doc(p50_ms=10 ** 400), "finite number >= 0"),
    (_doc(peak_rss_bytes=1.5), "'peak_rss_bytes' is float"),
    (_doc(outputs={}), "'outputs' is dict"),
    (_doc(outputs=[1]), "output 0 is a JSON int"),
    (_doc(outputs=[{"dtype": "V8", "shape": [1], "sha256": "0" * 64}]), "not a numeric tensor type"),
    (_doc(outputs=[{"dtype": "uint8", "shape": [-1], "sha256": "0" * 64}]), "shape"),
    (_doc(outputs=[{"dtype": "uint8", "shape": [1], "sha256": "xyz"}]), "sha256"),
    (_doc(eval={"samples": 2, "predictions": [1, "2"]}), "eval predictions"),
    (_doc(eval={"samples": 1, "predictions": [1], "accuracy": 7}), "not in 0..1"),
    (_doc(eval=[]), "'eval' is list"),
])
def test_malformed_results_are_remote_errors(result: CommandResult, needle: str) -> None:
    with pytest.raises(RemoteError) as caught:
        parse_device_document("pi", "me@pi:22", result)
    assert needle in caught.value.message and "--python" in (caught.value.hint or "")


def test_device_errors_and_clean_results() -> None:
    with pytest.raises(RemoteError, match="malformed error report"):
        parse_device_document("pi", "a", CommandResult("run", '{"error": {"kind": {}, "message": 1}}', "", 3))
    error = CommandResult("run", json.dumps({"error": {"kind": "model", "message": f"{ESC}bad\nmodel"}}), "", 3)
    with pytest.raises(UserError) as caught:
        parse_device_document("pi", "a", error)
    assert caught.value.message == "pi: bad\nmodel"
    fields = parse_device_document("pi", "a", _doc(host="evil", threads=99, interpreter=f"{ESC}lite\nrt" + "x" * 500,
                                                   eval={"samples": 0, "predictions": [], "accuracy": float("nan")}))
    assert "host" not in fields and "threads" not in fields and fields["eval"]["accuracy"] is None
    assert fields["interpreter"].startswith("lite rt") and len(fields["interpreter"]) == 200


@pytest.mark.parametrize("stdout, needle", [
    ("EDGEQ-PROBE {oops\n", "not valid JSON"),
    ("EDGEQ-PROBE []\n", "expected an object"),
    ('EDGEQ-PROBE {"python": 3, "modules": {}}\n', "'python' is int"),
    ('EDGEQ-PROBE {"python": "three", "modules": {}}\n', "expected a version"),
    ('EDGEQ-PROBE {"python": "3.11.2", "modules": []}\n', "'modules' is list"),
    ('EDGEQ-PROBE {"python": "3.11.2", "modules": {"numpy": 1}}\n', "'numpy' is int"),
    ('EDGEQ-PROBE {"python": "3.11.2", "modules": {}, "cores": "4"}\n', "'cores' is str"),
    ("nothing\n", "printed no EDGEQ-PROBE line"),
])
def test_malformed_probe_answers(stdout: str, needle: str) -> None:
    with pytest.raises(RemoteError) as caught:
        DeviceInfo.from_probe("pi", "me@pi:22", "python3", CommandResult("probe", stdout, "", 0))
    assert needle in caught.value.message


def test_probe_strings_are_printable() -> None:
    info = DeviceInfo.from_probe("pi", "me@pi:22", "python3", _probe(
        system=f"Linux{ESC}", cpu=f"{ESC}Evil\rCPU\u202e" + "x" * 500, release="6.1\n\x1b]52;c;cHduZWQ=\x07"))
    summary = info.summary()
    assert summary.isprintable() and "Linux" in summary and "EvilCPU" in summary and "title" not in summary
    assert info.cpu is not None and len(info.cpu) == 200
    assert probe_document("pi", "a", _probe(cores=None))["cores"] is None


def test_device_script_reports_unexpected_exceptions_in_the_protocol(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Not a traceback on stderr: one error document the host maps to a readable RemoteError."""
    def broken(args: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(ds, "benchmark", broken)
    assert ds.main(["--model", "m.tflite"]) == 3
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    with pytest.raises(RemoteError) as caught:
        parse_device_document("pi", "a", CommandResult("run", captured.out, captured.err, 3))
    assert "pi: ZeroDivisionError: division by zero (at test_bench_hostile.py:" in caught.value.message
    assert "--keep-remote" in (caught.value.hint or "")
