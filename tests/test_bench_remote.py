"""``edgeq bench`` end to end: real models, a real sshd on 127.0.0.1, this machine as the device.

The 'device' Python is this venv's (it has ai_edge_litert). After every failure the
server's TMPDIR (set by sshd's SetEnv) must hold no ``edgeq-bench.*`` dir and no device
script may still be running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from edgeq.remote.runner import bench
from edgeq.errors import RemoteError, ToolMissingError

try:
    from sshd import Sshd, SshdFactory, free_port, keygen, sshd_factory  # noqa: F401  (fixture)
except ImportError:  # tests/ is a package
    from tests.sshd import Sshd, SshdFactory, free_port, keygen, sshd_factory  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "it's \"q\" $(touch pwned) `touch pwned2`; x.tflite"
# Registers the command the way edgeq/cli/app.py does, unless the app already has it.
CLI = [sys.executable, "-c", (
    "import sys\nimport edgeq.cli.app as cli\nfrom edgeq.cli.bench import bench_command\n"
    "if not any(c.name == 'bench' or c.callback is bench_command for c in cli.app.registered_commands):\n"
    "    cli.app.command('bench')(bench_command)\ncli.main(sys.argv[1:])\n")]


@dataclass(frozen=True)
class Models:
    int8: Path
    float: Path
    hostile: Path
    eval_data: Path


@pytest.fixture(scope="module")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """One tiny CNN, converted once to float and to full int8 with uint8 I/O (the real converter)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    directory = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3), keras.layers.Softmax()])
    model.export(str(directory / "saved"), input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)], verbose=False)
    rng = np.random.default_rng(0)
    float_path, int8_path = directory / "float.tflite", directory / "int8.tflite"
    float_path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(directory / "saved")).convert())
    converter = tf.lite.TFLiteConverter.from_saved_model(str(directory / "saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, 8, 8, 1), dtype=np.float32)] for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    int8_path.write_bytes(converter.convert())
    hostile = directory / "dir with space" / HOSTILE
    hostile.parent.mkdir()
    hostile.write_bytes(int8_path.read_bytes())
    eval_data = directory / "eval data.npz"
    x = rng.random((30, 8, 8, 1), dtype=np.float32)
    np.savez(eval_data, x=x, y=model.predict(x, verbose=0).argmax(-1))
    return Models(int8_path, float_path, hostile, eval_data)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("EDGEQ_SSH_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def server(sshd_factory: SshdFactory) -> Iterator[Sshd]:
    server = sshd_factory.start()
    yield server
    assert server.leftovers() == []


@pytest.fixture()
def known(server: Sshd, tmp_path: Path) -> Path:
    return server.write_known_hosts(tmp_path / "known_hosts")


def _options(server: Sshd, known: Path, **extra: object) -> dict:
    options = dict(hosts=[f"127.0.0.1:{server.port}"], user=server.user, identity=server.identity,
                   known_hosts=known, ssh_config=Path(os.devnull), python=sys.executable, runs=20, warmup=2)
    options.update(extra)
    return options


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _ssh_args(server: Sshd, known: Path) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(server.port), "--user", server.user, "--identity",
            str(server.identity), "--known-hosts", str(known), "--ssh-config", os.devnull,
            "--python", sys.executable]


def device_pids(server: Sshd) -> list[int]:
    """Device scripts running out of this server's TMPDIR (their cmdline holds the path)."""
    mark = str(server.device_tmp).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _assert_clean(server: Sshd) -> None:
    _wait_for(lambda: not device_pids(server), timeout=10)
    assert server.leftovers() == []


def test_cli_int8_and_float_with_two_thread_counts(server: Sshd, known: Path, bench_models: Models) -> None:
    """The acceptance command: four results with p50/p90/p99 as versioned JSON on stdout."""
    done = _cli("bench", str(bench_models.int8), str(bench_models.float), *_ssh_args(server, known), "--threads", "1,2",
                "--runs", "30", "--warmup", "3", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["schema_version"], doc["kind"]) == (1, "bench")
    got = [(r["model"], r["threads"]) for r in doc["results"]]
    int8, flt = str(bench_models.int8), str(bench_models.float)
    assert got == [(int8, 1), (int8, 2), (flt, 1), (flt, 2)]
    for r in doc["results"]:
        assert r["host"] == "127.0.0.1" and r["interpreter"] == "ai_edge_litert" and r["output_match"] is True
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["init_ms"] > 0 and r["peak_rss_bytes"] > 1 << 20
        assert r["quantization"] == ("int8" if r["model"] == int8 else "float")
    assert doc["results"][0]["size_ratio"] < 1 and doc["results"][2]["latency_ratio"] == 1.0
    _assert_clean(server)


def test_cli_table_shows_int8_vs_float_ratios(server: Sshd, known: Path, bench_models: Models) -> None:
    done = _cli("bench", str(bench_models.int8), str(bench_models.float), *_ssh_args(server, known), "--runs", "10")
    assert done.returncode == 0, done.stderr
    assert "p50 vs float" in done.stdout and "size vs float" in done.stdout and "1.00x" in done.stdout
    assert "int8" in done.stdout and "127.0.0.1" in done.stdout


def test_cli_unknown_host_key_then_accept_new(server: Sshd, bench_models: Models, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    refused = _cli("bench", str(bench_models.int8), *_ssh_args(server, known))
    assert refused.returncode == 2 and server.fingerprint in refused.stderr
    assert "--accept-new-host-key" in refused.stderr and "Traceback" not in refused.stderr
    accepted = _cli("bench", str(bench_models.int8), *_ssh_args(server, known), "--runs", "5", "--accept-new-host-key")
    assert accepted.returncode == 0, accepted.stderr
    assert server.known_hosts_line() in known.read_text()
    _assert_clean(server)


@pytest.mark.parametrize("case", ["unknown key", "changed key", "wrong identity"])
def test_connection_refusals_leave_nothing_behind(server: Sshd, bench_models: Models, tmp_path: Path,
                                                  case: str) -> None:
    known = tmp_path / "known_hosts"
    identity = server.identity
    if case == "changed key":
        other = keygen(tmp_path / "other").with_suffix(".pub").read_text().split()[:2]
        known.write_text(f"{server.host_key_name} {' '.join(other)}\n")
    elif case == "wrong identity":
        server.write_known_hosts(known)
        identity = keygen(tmp_path / "wrong")
    with pytest.raises(RemoteError, match="unknown host key|CHANGED|authentication failed"):
        bench([bench_models.int8], **_options(server, known, identity=identity))
    _assert_clean(server)


def test_cli_closed_port_fails_within_the_timeout(bench_models: Models, tmp_path: Path) -> None:
    start = time.monotonic()
    done = _cli("bench", str(bench_models.int8), "--host", f"127.0.0.1:{free_port()}", "--known-hosts",
                str(tmp_path / "kh"), "--ssh-config", os.devnull)
    assert done.returncode == 2 and "connection refused" in done.stderr
    assert time.monotonic() - start < 15


def test_eval_data_on_the_device(server: Sshd, known: Path, bench_models: Models) -> None:
    report = bench([bench_models.float, bench_models.int8], eval_data=bench_models.eval_data, **_options(server, known))
    by_model = {r.model: r for r in report.results}
    assert by_model[str(bench_models.float)].accuracy == 1.0  # labels are the float model's own predictions
    assert by_model[str(bench_models.int8)].eval_samples == 30
    assert 0.5 <= by_model[str(bench_models.int8)].agreement <= 1.0
    assert by_model[str(bench_models.int8)].accuracy == by_model[str(bench_models.int8)].agreement
    _assert_clean(server)


def test_hostile_model_path_is_quoted(server: Sshd, known: Path, bench_models: Models) -> None:
    report = bench([bench_models.hostile], keep_remote=True, **_options(server, known))
    assert report.results[0].model == str(bench_models.hostile) and report.results[0].output_match
    (kept,) = server.leftovers()
    files = sorted(p.name for p in (server.device_tmp / kept).iterdir())
    assert files == ["device_script.py", "m0-" + HOSTILE]  # nothing named pwned anywhere
    subprocess.run(["rm", "-rf", str(server.device_tmp / kept)], check=True)
    assert not list(server.device_tmp.glob("**/pwned*")) and not list(Path.home().glob("pwned*"))


def test_host_local_without_xnnpack(bench_models: Models) -> None:
    report = bench([bench_models.int8], hosts=["local"], runs=10, warmup=1, threads=(2,), xnnpack=False)
    (result,) = report.results
    assert (result.host, result.threads, result.delegate, result.output_match) == ("local", 2, "none", True)
    assert report.devices[0].address.startswith("localhost")


def test_two_hosts_in_parallel(sshd_factory: SshdFactory, server: Sshd, bench_models: Models, tmp_path: Path) -> None:
    other = sshd_factory.start()
    known = other.write_known_hosts(server.write_known_hosts(tmp_path / "kh"))
    overlap = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if device_pids(server) and device_pids(other):
                overlap.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = bench([bench_models.int8], **_options(server, known, runs=100_000,
                                                 hosts=[f"127.0.0.1:{server.port}", f"127.0.0.1:{other.port}"]))
    finally:
        stop.set()
        watcher.join()
    assert [r.host for r in report.results] == [f"127.0.0.1:{server.port}", f"127.0.0.1:{other.port}"]
    assert overlap.is_set(), "the two hosts did not run at the same time"
    _assert_clean(server)
    _assert_clean(other)


def _make_python(tmp_path: Path, with_numpy: bool) -> str:
    """A real venv without ai_edge_litert (and optionally with numpy, linked from this venv)."""
    venv = tmp_path / ("numpy-only" if with_numpy else "bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    if with_numpy:
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        extra = tmp_path / "numpy-site"
        extra.mkdir()
        source = Path(np.__file__).parent.parent
        for item in source.iterdir():
            if item.name.startswith("numpy"):
                (extra / item.name).symlink_to(item)
        Path(site, "numpy_only.pth").write_text(str(extra) + "\n")
    return python


@pytest.mark.parametrize("with_numpy, needle", [(True, "no TFLite interpreter"), (False, "numpy is not installed")])
def test_device_python_without_interpreter(server: Sshd, known: Path, bench_models: Models, tmp_path: Path,
                                           with_numpy: bool, needle: str) -> None:
    python = _make_python(tmp_path, with_numpy)
    with pytest.raises(ToolMissingError) as caught:
        bench([bench_models.int8], **_options(server, known, python=python))
    assert needle in caught.value.message and "pip install ai-edge-litert" in (caught.value.hint or "")
    _assert_clean(server)


def test_missing_device_python(server: Sshd, known: Path, bench_models: Models) -> None:
    with pytest.raises(ToolMissingError, match="was not found"):
        bench([bench_models.int8], **_options(server, known, python="/nonexistent/python3"))
    _assert_clean(server)


def _kill_when_running(server: Sshd, sig: int) -> threading.Thread:
    def killer() -> None:
        _wait_for(lambda: bool(device_pids(server)))
        time.sleep(0.3)
        os.kill(device_pids(server)[0], sig)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def test_remote_process_killed_mid_run(server: Sshd, known: Path, bench_models: Models) -> None:
    killer = _kill_when_running(server, signal.SIGKILL)
    with pytest.raises(RemoteError, match="signal"):
        bench([bench_models.int8], **_options(server, known, runs=10**8))
    killer.join()
    _assert_clean(server)


def test_run_timeout_kills_and_cleans_up(server: Sshd, known: Path, bench_models: Models) -> None:
    with pytest.raises(RemoteError, match="timed out"):
        bench([bench_models.int8], **_options(server, known, runs=10**8, run_timeout=2))
    _assert_clean(server)


def _interruptible(*args: str) -> subprocess.Popen:
    """Start the CLI as a foreground process of a terminal would be: SIGINT at its default.

    Why: a process inherits an *ignored* SIGINT, and CI harnesses (and any shell running a
    script's ``cmd &`` without job control) start the test run with SIGINT ignored. Python
    then keeps ignoring it, so a Ctrl-C test without this reset sends a signal nobody hears:
    the bench ran on until the test's timeout, and its remote temp dir was left behind.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_kills_the_remote_process_and_cleans_up(server: Sshd, known: Path, bench_models: Models) -> None:
    process = _interruptible("bench", str(bench_models.int8), *_ssh_args(server, known), "--runs", str(10**8))
    try:
        _wait_for(lambda: bool(device_pids(server)) or process.poll() is not None)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    _assert_clean(server)


@pytest.mark.parametrize("delay", [0.6, 0.9, 1.3, 2.0])
def test_ctrl_c_at_any_moment_exits_130_quickly(server: Sshd, known: Path, bench_models: Models, delay: float) -> None:
    """Connect, probe, upload or run: whichever moment the Ctrl-C lands in, exit 130 within seconds, nothing left.

    (From 0.6 s: before that Python is still importing, and an interrupt there ends the process the
    way every Python program ends, by the signal.)
    """
    process = _interruptible("bench", str(bench_models.int8), *_ssh_args(server, known), "--runs", str(10**8))
    try:
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert took < 10 and "Traceback" not in stderr
    _assert_clean(server)


def test_ctrl_c_is_heard_when_the_test_run_ignores_sigint(server: Sshd, known: Path, bench_models: Models) -> None:
    """The harness condition that made this module fail in CI, reproduced: the runner itself ignores SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = _interruptible("bench", str(bench_models.int8), *_ssh_args(server, known), "--runs", str(10**8))
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _wait_for(lambda: bool(device_pids(server)) or process.poll() is not None)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    _assert_clean(server)
