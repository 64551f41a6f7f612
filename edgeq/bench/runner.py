"""``edgeq.bench()``: probe each device, upload, run the device script, collect a BenchReport.

Hosts run in parallel (one thread each); the measurements on one host run one at a time so
they do not disturb each other. Whatever happens -- a failure, a timeout, Ctrl-C -- every
remote process started is killed and every remote temp dir removed (unless keep_remote).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import posixpath
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgeq.bench import TEMP_PREFIX, Cancelled, CommandResult
from edgeq.bench import device_script as ds
from edgeq.bench.report import (BenchReport, BenchResult, DeviceInfo, compare_outputs, parse_device_document,
                                with_comparisons)
from edgeq.bench.ssh import Connection, resolve_target
from edgeq.console import err, info, quiet, warn
from edgeq.errors import CalibrationError, EdgeqError, ModelError, RemoteError, ToolMissingError, UserError

T = TypeVar("T")
LOCAL = "local"


@dataclass(frozen=True)
class _Model:
    """A model checked locally; ``name`` is the path as the user gave it (the report's key)."""

    path: Path
    name: str
    size: int
    quantization: str


@dataclass(frozen=True)
class _Plan:
    """What every host runs, fixed before the first connection."""

    models: tuple[_Model, ...]
    threads: tuple[int, ...]
    runs: int
    warmup: int
    xnnpack: bool
    eval_samples: int
    run_timeout: Optional[float]


class RemoteDevice:
    """A host reached over SSH; files live in a fresh ``mktemp -d`` dir removed by close()."""

    def __init__(self, host: str, connection: Connection, python: str, keep_remote: bool) -> None:
        self.host, self.connection, self.python, self.keep_remote = host, connection, python, keep_remote
        self.address = connection.target.label
        self.directory: Optional[str] = None
        self.pid: Optional[int] = None

    def open(self) -> None:
        self.connection.open()

    def probe(self) -> DeviceInfo:
        """One round trip: make the temp dir (``mktemp -d``), then ask the device's Python."""
        py = shlex.quote(self.python)
        result = self.connection.run(
            f'mktemp -d "${{TMPDIR:-/tmp}}/{TEMP_PREFIX}XXXXXX" && if command -v {py} >/dev/null 2>&1; '
            f"then {py} -c {shlex.quote(ds.PROBE_CODE)}; else echo EDGEQ-NO-PYTHON; fi", check=False)
        made = (result.stdout.splitlines() or [""])[0].strip()
        if made.startswith("/") and posixpath.basename(made).startswith(TEMP_PREFIX):
            self.directory = made  # from here on close() removes it, whatever the probe says
        elif result.exit_status == 0:
            raise RemoteError(f"mktemp on {self.host} returned an unexpected path: {made!r}")
        return DeviceInfo.from_probe(self.host, self.address, self.python, result)

    def stage(self, files: Sequence[tuple[Path, str]]) -> list[str]:
        """Upload (local, remote name) pairs into the temp dir; return the remote paths."""
        assert self.directory is not None
        for local, name in files:
            self.connection.put(local, posixpath.join(self.directory, name))
        return [posixpath.join(self.directory, name) for _, name in files]

    def run_script(self, args: Sequence[str], *, on_line: Callable[[str], None],
                   cancel: threading.Event, timeout: Optional[float]) -> CommandResult:
        assert self.directory is not None
        argv = [self.python, posixpath.join(self.directory, "device_script.py"), *args]
        command = f"cd {shlex.quote(self.directory)} && exec {shlex.join(argv)}"  # shlex.join quotes each

        def line(text: str) -> None:
            if text.startswith(ds.PID_PREFIX):
                self.pid = int(text[len(ds.PID_PREFIX):])
            on_line(text)

        try:
            result = self.connection.run(command, check=False, timeout=timeout, on_stderr_line=line, cancel=cancel)
        except BaseException:
            self._kill()
            raise
        self.pid = None
        return result

    def _kill(self) -> None:
        """SIGKILL the device script -- only if /proc confirms the pid is still ours."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        mark = shlex.quote(self.directory or TEMP_PREFIX)
        self._quietly(f"if [ -d /proc/{pid} ]; then grep -qF -- {mark} /proc/{pid}/cmdline && kill -KILL {pid}; "
                      f"elif [ ! -d /proc/self ]; then kill -KILL {pid}; fi 2>/dev/null; true")

    def _quietly(self, command: str) -> None:
        """Cleanup commands: retry once on a fresh connection, warn instead of raising."""
        try:
            self.connection.run(command, timeout=30)
        except EdgeqError:
            try:
                self.connection.open()
                self.connection.run(command, timeout=30)
            except EdgeqError as exc:
                warn(f"cleanup on {self.host} failed ({exc.message}); run it by hand: {command}")

    def close(self) -> None:
        try:
            self._kill()
            if self.directory and self.keep_remote:
                info(f"kept {self.host}:{self.directory} (--keep-remote)")
            elif self.directory:
                self._quietly(f"rm -rf -- {shlex.quote(self.directory)}")
                self.directory = None
        finally:
            self.connection.close()


class LocalDevice:
    """``--host local``: the same device script in a local subprocess, the no-network baseline."""

    def __init__(self, python: Optional[str]) -> None:
        self.host, self.address, self.python = LOCAL, "localhost (subprocess)", python or sys.executable
        self.process: Optional[subprocess.Popen[bytes]] = None

    def open(self) -> None:  # nothing to connect to
        return None

    def probe(self) -> DeviceInfo:
        try:
            done = subprocess.run([self.python, "-c", ds.PROBE_CODE], capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise ToolMissingError(f"{self.python!r} was not found", hint="point --python at a Python >= 3.8") from None
        result = CommandResult(f"{self.python} -c PROBE", done.stdout, done.stderr, done.returncode)
        return DeviceInfo.from_probe(self.host, self.address, self.python, result)

    def stage(self, files: Sequence[tuple[Path, str]]) -> list[str]:
        return [str(local) for local, _ in files]  # nothing to copy: the files are already here

    def run_script(self, args: Sequence[str], *, on_line: Callable[[str], None],
                   cancel: threading.Event, timeout: Optional[float]) -> CommandResult:
        argv = [self.python, ds.__file__, *args]
        # A new session: the terminal's Ctrl-C reaches only us, and we decide how the child ends.
        self.process = proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, start_new_session=True)
        out: list[bytes] = []
        err: list[str] = []

        def pump(stream: Any, sink: Callable[[bytes], None]) -> None:
            for raw in stream:
                sink(raw)

        def on_err(raw: bytes) -> None:
            err.append(raw.decode("utf-8", "replace"))
            on_line(err[-1].rstrip("\n"))

        readers = [threading.Thread(target=pump, args=(proc.stdout, out.append), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, on_err), daemon=True)]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if cancel.is_set():
                    raise Cancelled()
                if deadline is not None and time.monotonic() > deadline:
                    raise RemoteError(f"timed out after {timeout:g} s: {shlex.join(argv)}")
                time.sleep(0.05)
        finally:
            self.close()
            for reader in readers:
                reader.join(5)
        return CommandResult(shlex.join(argv), b"".join(out).decode("utf-8", "replace"), "".join(err),
                             proc.returncode)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


Device = Union[RemoteDevice, LocalDevice]


def _load_models(paths: Sequence[Union[str, Path]]) -> tuple[_Model, ...]:
    """Check every model locally before touching a device: a bad file fails in milliseconds."""
    try:
        backend = ds.load_backend("ai_edge_litert")
    except ds.DeviceError as exc:
        raise ToolMissingError(exc.message, hint="pip install ai-edge-litert (edgeq checks models locally)") from None
    models = []
    for given in dict.fromkeys(str(p) for p in paths):
        path = Path(given)
        if not path.is_file():
            raise UserError(f"model {given} does not exist")
        with path.open("rb") as handle:
            if handle.read(8)[4:8] != b"TFL3":
                raise ModelError(f"{given} is not a .tflite model", hint="convert it first (edgeq quantize)")
        try:
            kind = ds.model_kind(ds.make_interpreter(backend, str(path), 1, False))
        except ds.DeviceError as exc:
            raise ModelError(f"{given}: {exc.message}") from None
        models.append(_Model(path, given, path.stat().st_size, kind))
    return tuple(models)


def _eval_samples(path: Path) -> int:
    """Samples in the eval data (for the progress bar), checked locally before connecting."""
    if not path.is_file():
        raise UserError(f"eval data {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data.files:
                raise CalibrationError(f"eval data {path} has no array 'x'", hint="np.savez(f, x=..., y=...)")
            return int(data["x"].shape[0]) if data["x"].ndim else 0
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read eval data {path}: {exc}") from None


def _with_output_checks(rows: list[tuple[BenchResult, list[dict[str, Any]]]], plan: _Plan) -> list[BenchResult]:
    """Compare each device output with local LiteRT under the same settings.

    Runs after all measurements, in the main thread, so it never competes for the CPU with
    a ``--host local`` measurement; ``quiet()`` hides LiteRT's C-level "INFO" lines.
    """
    backend = ds.load_backend("ai_edge_litert")
    paths = {m.name: m.path for m in plan.models}
    cache: dict[tuple[str, int], Optional[list[Any]]] = {}
    checked = []
    with quiet():
        for result, outputs in rows:
            key = (result.model, result.threads)
            if key not in cache:
                cache[key] = _reference_outputs(backend, paths[result.model], result.threads, plan.xnnpack)
            reference = cache[key]
            match, diff = compare_outputs(reference, outputs) if reference is not None else (None, None)
            checked.append(dataclasses.replace(result, output_match=match, output_max_abs_diff=diff))
    return checked


def _reference_outputs(backend: Any, model: Path, threads: int, xnnpack: bool) -> Optional[list[Any]]:
    """Local LiteRT outputs for the fixed input, or None if this setting cannot run here."""
    try:
        interpreter = ds.make_interpreter(backend, str(model), threads, xnnpack)
    except ds.DeviceError:
        return None
    ds.set_fixed_inputs(interpreter)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


_Row = tuple[BenchResult, list[dict[str, Any]], Optional[list[int]]]  # result, outputs, eval predictions


def _run_host(device: Device, files: list[str], plan: _Plan, cancel: threading.Event, progress: Any) -> list[_Row]:
    """Every model x threads on one device, one after the other."""
    models, eval_path = files[1:1 + len(plan.models)], (files[-1] if len(files) > 1 + len(plan.models) else None)
    per_run = plan.warmup + plan.runs + plan.eval_samples
    task = progress.add_task(device.host, total=per_run * len(plan.models) * len(plan.threads))
    offsets = {"warmup": 0, "timed": plan.warmup, "eval": plan.warmup + plan.runs}
    done, out = 0, []
    for model, remote in zip(plan.models, models, strict=True):
        for threads in plan.threads:
            label = f"{device.host} {model.path.name} t={threads}"

            def on_line(line: str, base: int = done, label: str = label) -> None:
                if line.startswith(ds.PROGRESS_PREFIX):
                    step = json.loads(line[len(ds.PROGRESS_PREFIX):])
                    progress.update(task, completed=base + offsets.get(step["phase"], 0) + step["done"],
                                    description=f"{label} {step['phase']}")

            args = ["--model", remote, "--threads", str(threads), "--runs", str(plan.runs), "--warmup",
                    str(plan.warmup), "--exit-on-stdin-eof", *([] if plan.xnnpack else ["--no-xnnpack"]),
                    *(["--eval-data", eval_path] if eval_path else [])]
            run = device.run_script(args, on_line=on_line, cancel=cancel, timeout=plan.run_timeout)
            doc = parse_device_document(device.host, device.address, run)
            done += per_run
            result = BenchResult.from_device(doc, host=device.host, model=model.name, model_size_bytes=model.size,
                                             quantization=model.quantization)
            out.append((result, doc["outputs"], (doc.get("eval") or {}).get("predictions")))
    return out


def _parallel(calls: Sequence[Callable[[], T]], cancel: threading.Event) -> list[T]:
    """Run one call per host in threads; first failure or Ctrl-C cancels the others."""
    pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="edgeq-bench")
    futures = [pool.submit(call) for call in calls]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            cancel.set()
        wait(futures)
    except KeyboardInterrupt:
        cancel.set()  # workers see it within 0.1 s, kill their remote process and return
        wait(futures)
        raise
    finally:
        pool.shutdown(wait=True)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    for error in errors:  # the first real failure, in host order; the others were cancelled by it
        if not isinstance(error, Cancelled):
            raise error
    if errors:
        raise KeyboardInterrupt()
    return [f.result() for f in futures]


def bench(
    models: Sequence[Union[str, Path]], *, hosts: Sequence[str],
    user: Optional[str] = None, port: Optional[int] = None, identity: Optional[Path] = None,
    ssh_config: Optional[Path] = None, known_hosts: Optional[Path] = None, accept_new_host_key: bool = False,
    runs: int = 100, warmup: int = 10, threads: Sequence[int] = (1,), xnnpack: bool = True,
    eval_data: Optional[Path] = None, python: Optional[str] = None, connect_timeout: Optional[float] = None,
    run_timeout: Optional[float] = None, keep_remote: bool = False, progress: bool = False,
) -> BenchReport:
    """Benchmark ``models`` on every host (``"local"`` = a local subprocess) and compare them.

    ``python`` is the device's interpreter (default ``python3``; for ``local`` the Python
    running edgeq). ``connect_timeout`` defaults to the ssh config's ConnectTimeout, else 10 s;
    ``run_timeout`` limits each single measurement. Raises an EdgeqError subclass on any
    failure, after cleaning up every host.
    """
    if not hosts or not models:
        raise UserError("give at least one model and one --host (HOST or 'local')")
    if runs < 1 or warmup < 0 or not threads or min(threads) < 1:
        raise UserError("runs must be >= 1, warmup >= 0 and threads >= 1")
    loaded = _load_models(models)
    plan = _Plan(loaded, tuple(dict.fromkeys(int(t) for t in threads)), runs, warmup, xnnpack,
                 _eval_samples(eval_data) if eval_data else 0, run_timeout)
    devices: list[Device] = [
        LocalDevice(python) if host == LOCAL else RemoteDevice(host, Connection(resolve_target(
            host, user=user, port=port, identity=identity, ssh_config=ssh_config, known_hosts=known_hosts,
            accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)), python or "python3",
            keep_remote)
        for host in dict.fromkeys(hosts)]
    files = [(Path(ds.__file__), "device_script.py"), *((m.path, f"m{i}-{m.path.name}") for i, m in enumerate(loaded)),
             *([(eval_data, f"eval-{eval_data.name}")] if eval_data else [])]
    cancel = threading.Event()

    def setup(device: Device) -> tuple[DeviceInfo, list[str]]:
        device.open()
        return device.probe(), device.stage(files)

    try:
        staged = _parallel([functools.partial(setup, d) for d in devices], cancel)
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=err, transient=True, disable=not progress)
        for device_info, _ in staged if progress else ():
            info(device_info.summary())
        with bar:
            per_host = _parallel([functools.partial(_run_host, d, s[1], plan, cancel, bar)
                                  for d, s in zip(devices, staged, strict=True)], cancel)
    finally:
        _close_all(devices)
    rows = [row for host_rows in per_host for row in host_rows]
    checked = _with_output_checks([(r, outputs) for r, outputs, _ in rows], plan)
    predictions = {id(r): p for r, (_, _, p) in zip(checked, rows, strict=True) if p is not None}
    return BenchReport(tuple(with_comparisons(checked, predictions)), tuple(device_info for device_info, _ in staged))


def _close_all(devices: Sequence[Device]) -> None:
    """Close every device even if Ctrl-C is pressed again meanwhile (then re-raise it)."""
    interrupted = None
    for device in devices:
        for _ in range(3):  # a device interrupted mid-cleanup gets another go
            try:
                device.close()
                break
            except KeyboardInterrupt as exc:
                interrupted = exc
    if interrupted:
        raise interrupted
