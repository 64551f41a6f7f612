"""``edgeq.bench()``: probe each device, upload, run the device script, collect a BenchReport.

Hosts run in parallel (one thread each); the measurements on one host run one at a time so
they do not disturb each other. Whatever happens -- a failure, a timeout, Ctrl-C -- every
remote process started is killed and every remote temp dir removed (unless keep_remote).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgeq.remote.common import Cancelled
from edgeq.remote import device_script as ds
from edgeq.remote.devices import Device, LocalDevice, RemoteDevice
from edgeq.remote.protocol import parse_device_document, parse_progress
from edgeq.remote.report import BenchReport, BenchResult, DeviceInfo, compare_outputs, with_comparisons
from edgeq.remote.ssh import Connection, resolve_target
from edgeq.console import err, info, quiet
from edgeq.errors import CalibrationError, EdgeqError, ModelError, ToolMissingError, UserError
from edgeq.text import one_line, printable

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
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
    task = progress.add_task(one_line(device.host, 120), total=per_run * len(plan.models) * len(plan.threads))
    phases = {"warmup": (0, plan.warmup), "timed": (plan.warmup, plan.runs),
              "eval": (plan.warmup + plan.runs, plan.eval_samples)}  # phase: (offset, length) on the bar
    done, out = 0, []
    for model, remote in zip(plan.models, models, strict=True):
        for threads in plan.threads:
            label = one_line(f"{device.host} {model.path.name} t={threads}", 120)

            def on_line(line: str, base: int = done, label: str = label) -> None:
                step = parse_progress(line) if line.startswith(ds.PROGRESS_PREFIX) else None
                if step is not None:  # malformed progress lines are ignored: they only drive the bar
                    offset, length = phases[step[0]]
                    progress.update(task, completed=base + offset + min(step[1], length),
                                    description=f"{label} {step[0]}")

            args = ["--model", remote, "--threads", str(threads), "--runs", str(plan.runs), "--warmup",
                    str(plan.warmup), "--exit-on-stdin-eof", *([] if plan.xnnpack else ["--no-xnnpack"]),
                    *(["--eval-data", eval_path] if eval_path else [])]
            run = device.run_script(args, on_line=on_line, cancel=cancel, timeout=plan.run_timeout)
            fields = parse_device_document(device.host, device.address, run)
            done += per_run
            result = BenchResult.from_device(
                fields, host=device.host, model=model.name, model_size_bytes=model.size,
                quantization=model.quantization, threads=threads, xnnpack=plan.xnnpack, runs=plan.runs,
                warmup=plan.warmup)  # the settings are the host's, whatever the device echoes
            out.append((result, fields["outputs"], (fields["eval"] or {}).get("predictions")))
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


def _printable_errors(func: F) -> F:
    """Every error bench() raises leaves it printable: its message quotes file names, device
    output and server text, any of which may carry terminal escape sequences."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgeqError as exc:
            exc.message = printable(exc.message)
            exc.hint = printable(exc.hint) if exc.hint else exc.hint
            exc.args = (exc.message,)
            raise

    return wrapper  # type: ignore[return-value]


@_printable_errors
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
    # Hosts first: a bad --host, --port or ssh config fails before the models load (~0.5 s).
    devices: list[Device] = [
        LocalDevice(python) if host == LOCAL else RemoteDevice(host, Connection(resolve_target(
            host, user=user, port=port, identity=identity, ssh_config=ssh_config, known_hosts=known_hosts,
            accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)), python or "python3",
            keep_remote)
        for host in dict.fromkeys(hosts)]
    loaded = _load_models(models)
    plan = _Plan(loaded, tuple(dict.fromkeys(int(t) for t in threads)), runs, warmup, xnnpack,
                 _eval_samples(eval_data) if eval_data else 0, run_timeout)
    files = [(Path(ds.__file__), "device_script.py"), *((m.path, f"m{i}-{m.path.name}") for i, m in enumerate(loaded)),
             *([(eval_data, f"eval-{eval_data.name}")] if eval_data else [])]
    cancel = threading.Event()

    def setup(device: Device) -> tuple[DeviceInfo, list[str]]:
        device.open()
        return device.probe(), device.stage(files)

    try:
        staged = _parallel([functools.partial(setup, d) for d in devices], cancel)
        bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=err, transient=True, disable=not progress)
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


__all__ = ["bench", "LOCAL", "RemoteDevice", "LocalDevice"]  # the devices live in edgeq.remote.devices
