"""Typed results of ``edgeq bench`` and their renderings (terminal table, versioned JSON).

Results are frozen dataclasses so the library API and the JSON contract cannot drift: the
JSON is ``dataclasses.asdict`` of the same objects the table is drawn from.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from edgeq.remote.common import CommandResult
from edgeq.remote import device_script as ds
from edgeq.remote.protocol import INSTALL_HINT, probe_document
from edgeq.errors import ToolMissingError
from edgeq.text import one_line

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DeviceInfo:
    """What the probe found on one host (``host`` is the name the user gave, e.g. ``local``)."""

    host: str
    address: str
    system: str
    release: str
    machine: str
    cpu: Optional[str]
    cores: Optional[int]
    mem_total_bytes: Optional[int]
    python: str
    python_executable: str
    interpreter: str
    interpreter_version: str
    numpy: str

    @classmethod
    def from_probe(cls, host: str, address: str, python: str, result: CommandResult) -> "DeviceInfo":
        """Parse the probe's output, or raise an error saying what to install where (exit 2).

        Every field comes from the device and was checked and made printable by
        ``protocol.probe_document``; ``host`` and ``python`` come from the user.
        """
        shown_python, shown_host = one_line(repr(python)), one_line(host)
        if "EDGEQ-NO-PYTHON" in result.stdout:
            raise ToolMissingError(f"{shown_python} was not found on {shown_host}",
                                   hint="install Python >= 3.8 with numpy on the device, or point --python at it")
        data = probe_document(host, address, result)
        if tuple(int(part) for part in data["python"].split(".")[:2]) < (3, 8):
            raise ToolMissingError(f"Python {data['python']} ({shown_python}) on {shown_host} is too old: the device "
                                   "script needs Python >= 3.8",
                                   hint="install a newer Python and pass it with --python")
        modules = data["modules"]
        if not modules.get("numpy"):
            raise ToolMissingError(f"numpy is not installed for {data['executable']} on {shown_host}",
                                   hint=INSTALL_HINT)
        found = [name for name in ds.BACKENDS if modules.get(name)]
        if not found:
            raise ToolMissingError(f"no TFLite interpreter (ai_edge_litert, tflite_runtime or tensorflow) is "
                                   f"installed for {data['executable']} on {shown_host}", hint=INSTALL_HINT)
        return cls(host=host, address=address, system=data["system"], release=data["release"],
                   machine=data["machine"], cpu=data["cpu"], cores=data["cores"],
                   mem_total_bytes=data["mem_total_bytes"], python=data["python"],
                   python_executable=data["executable"], interpreter=found[0],
                   interpreter_version=modules[found[0]], numpy=modules["numpy"])

    def summary(self) -> str:
        mem = f", {self.mem_total_bytes / 2**30:.1f} GiB" if self.mem_total_bytes else ""
        cores = f", {self.cores} cores" if self.cores else ""
        cpu = f" {self.cpu}" if self.cpu else ""
        return one_line(f"{self.host} ({self.address}): {self.system} {self.machine}{cpu}{cores}{mem}; "
                        f"Python {self.python}, {self.interpreter} {self.interpreter_version}, numpy {self.numpy}",
                        width=1000)


@dataclass(frozen=True)
class BenchResult:
    """One host x model x threads measurement. Times in milliseconds, sizes in bytes.

    ``output_match`` compares the device's output for a fixed input with the local LiteRT
    output under the same settings (None when it could not be compared). ``latency_ratio``
    and ``size_ratio`` are relative to ``baseline_model`` (the first float model given, or
    the first model) on the same host and thread count. ``agreement`` is the top-1
    agreement with the baseline model's predictions on the eval data.
    """

    host: str
    model: str
    model_size_bytes: int
    quantization: str
    threads: int
    xnnpack: bool
    runs: int
    warmup: int
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    init_ms: float
    first_inference_ms: float
    import_ms: float
    peak_rss_bytes: int
    interpreter: str
    interpreter_version: str
    delegate: str
    output_match: Optional[bool] = None
    output_max_abs_diff: Optional[float] = None
    accuracy: Optional[float] = None
    agreement: Optional[float] = None
    eval_samples: Optional[int] = None
    baseline_model: Optional[str] = None
    latency_ratio: Optional[float] = None
    size_ratio: Optional[float] = None

    @classmethod
    def from_device(cls, fields: dict[str, Any], **known: Any) -> "BenchResult":
        """Build a result from the device's checked fields (``protocol.parse_device_document``)
        and what the host knows itself (``known``: host, model, size, quantization, threads,
        xnnpack, runs, warmup -- taken from the plan, not from the device). Comparisons are
        filled in later."""
        evaluation = fields.get("eval") or {}
        names = {f.name for f in dataclasses.fields(cls)} - set(known) - {"accuracy", "eval_samples"}
        return cls(**known, **{name: fields[name] for name in names if name in fields},
                   accuracy=evaluation.get("accuracy"), eval_samples=evaluation.get("samples"))


@dataclass(frozen=True)
class BenchReport:
    """Everything ``edgeq.bench()`` measured, in host x model x threads order."""

    results: tuple[BenchResult, ...]
    devices: tuple[DeviceInfo, ...]

    @property
    def mismatches(self) -> tuple[BenchResult, ...]:
        return tuple(r for r in self.results if r.output_match is False)

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON document (``--json``): bump SCHEMA_VERSION on breaking changes."""
        from edgeq.version import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "bench",
            "edgeq_version": __version__,
            "devices": [dataclasses.asdict(d) for d in self.devices],
            "results": [dataclasses.asdict(r) for r in self.results],
        }


def with_comparisons(results: list[BenchResult], predictions: dict[int, list[int]]) -> list[BenchResult]:
    """Fill in ratios and agreement against the baseline model on the same host and threads.

    ``predictions`` maps ``id(result)`` to its eval-data top-1 predictions, if any.
    """
    models = list(dict.fromkeys(r.model for r in results))
    kinds = {r.model: r.quantization for r in results}
    baseline = next((m for m in models if kinds[m] == "float"), models[0] if models else None)
    if baseline is None or len(models) < 2:
        return results
    base = {(r.host, r.threads, r.xnnpack): r for r in results if r.model == baseline}
    updated = []
    for result in results:
        ref = base.get((result.host, result.threads, result.xnnpack))
        if ref is None:
            updated.append(result)
            continue
        agreement = None
        mine, theirs = predictions.get(id(result)), predictions.get(id(ref))
        if mine is not None and theirs is not None and len(mine) == len(theirs) and mine:
            agreement = sum(a == b for a, b in zip(mine, theirs, strict=True)) / len(mine)
        updated.append(dataclasses.replace(
            result, baseline_model=baseline, agreement=agreement,
            latency_ratio=result.p50_ms / ref.p50_ms if ref.p50_ms > 0 else None,
            size_ratio=result.model_size_bytes / ref.model_size_bytes if ref.model_size_bytes else None,
        ))
    return updated


def decode_output(entry: dict[str, Any]) -> Any:
    """The array ``encode_outputs`` shipped, or None if only its hash was sent."""
    import numpy as np

    if "data_b64" not in entry:
        return None
    raw = base64.b64decode(entry["data_b64"])
    return np.frombuffer(raw, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).reshape(entry["shape"])


def compare_outputs(reference: Sequence[Any], device: Sequence[dict[str, Any]]) -> tuple[bool, Optional[float]]:
    """(match, max abs difference) of device outputs against reference arrays.

    Tolerance: 2 quantization steps for integer outputs (XNNPACK kernels may round
    differently across CPUs), 1e-4 + 1e-3 * max|reference| for float outputs.
    """
    import numpy as np

    if len(reference) != len(device):
        return False, None
    worst, ok = 0.0, True
    for ref, entry in zip(reference, device, strict=True):
        got = decode_output(entry)
        if got is None:
            ok = ok and entry.get("sha256") == ds.hashlib_sha256(ref)
            continue
        if got.shape != ref.shape:
            return False, None
        a, b = got.astype(np.float64), ref.astype(np.float64)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return False, None
        diff = float(np.nanmax(np.abs(a - b))) if a.size and not np.isnan(a).all() else 0.0
        tol = 2.0 if ref.dtype.kind in "iub" else 1e-4 + 1e-3 * float(np.nanmax(np.abs(b), initial=0.0))
        worst, ok = max(worst, diff), ok and diff <= tol
    return ok, worst


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _ratio(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}x"


def render_table(report: BenchReport) -> Any:
    """A rich Table: one row per host x model x threads, ratios against the baseline model."""
    from rich.table import Table
    from rich.text import Text

    results = report.results
    baseline = next((r.baseline_model for r in results if r.baseline_model), None)
    base_kind = next((r.quantization for r in results if r.model == baseline), "")
    vs = "float" if base_kind == "float" else "base"
    with_eval = any(r.eval_samples for r in results)
    table = Table(title="edgeq bench", title_justify="left", caption_justify="left")
    columns = ["host", "model", "quant", "thr", "p50 ms", "p90 ms", "p99 ms", "init ms", "RSS MiB", "delegate"]
    columns += [f"p50 vs {vs}", f"size vs {vs}"] if baseline else []
    columns += ["output"] + (["accuracy", "agreement"] if with_eval else [])
    for name in columns:
        table.add_column(name, justify="left" if name in ("host", "model", "quant", "delegate", "output") else "right")
    for r in results:
        row: list[Any] = [r.host, r.model, r.quantization, str(r.threads), _ms(r.p50_ms), _ms(r.p90_ms),
                          _ms(r.p99_ms), _ms(r.init_ms), f"{r.peak_rss_bytes / 2**20:.1f}", r.delegate]
        if baseline:
            row += [_ratio(r.latency_ratio), _ratio(r.size_ratio)]
        if r.output_match is None:
            row.append("-")
        else:
            style = "green" if r.output_match else "bold red"
            diff = "shape" if r.output_max_abs_diff is None else f"{r.output_max_abs_diff:.3g}"  # None: not comparable
            row.append(Text(f"{'ok' if r.output_match else 'MISMATCH'} {diff}", style=style))
        if with_eval:
            row += ["" if r.accuracy is None else f"{100 * r.accuracy:.2f}%",
                    "" if r.agreement is None else f"{100 * r.agreement:.2f}%"]
        # Text() everywhere: a model path or device string containing [brackets] is not markup;
        # one_line(): nor may a file name's escape sequences reach the terminal.
        table.add_row(*(cell if isinstance(cell, Text) else Text(one_line(cell, 1000)) for cell in row))
    notes = [f"ratios: p50 latency and file size relative to {one_line(baseline, 1000)} (same host, threads)"
             ] if baseline else []
    notes += ["output: max |device - local LiteRT| for a fixed input"]
    table.caption = Text("; ".join(notes))  # a model name is not markup here either
    return table


def _stderr_is_the_same_terminal(console: Any) -> bool:
    import os

    try:
        a, b = os.fstat(console.file.fileno()), os.fstat(2)
        return console.is_terminal and os.isatty(2) and (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)
    except (OSError, ValueError, AttributeError):  # no real file (a test's capture): print them
        return False


def print_report(report: BenchReport, console: Any) -> None:
    """Device summaries then the table, on ``console`` (stdout in the CLI).

    Piped output gets the table's natural width instead of 80 columns of ellipses. On a
    terminal that also shows stderr, the summaries were already printed there as progress,
    so they are not repeated.
    """
    if not _stderr_is_the_same_terminal(console):
        for device in report.devices:
            console.print(device.summary(), markup=False)
    table = render_table(report)
    if not console.is_terminal:
        from rich.console import Console

        natural = console.measure(table, options=console.options.update_width(1000)).maximum
        if natural > console.width:
            console = Console(file=console.file, width=natural, highlight=False, soft_wrap=True)
    console.print(table)
