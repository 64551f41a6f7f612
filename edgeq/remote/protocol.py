"""Read what the device says -- probe line, PID and progress lines, the result document -- strictly.

Why strict: the device is untrusted input. Its ``python`` may be a wrapper, a broken
interpreter or a hostile box, so every line is parsed defensively and every field is
checked for its type and range before it reaches a dataclass, a division or the terminal.
Anything malformed is a ``RemoteError`` saying what the device sent and what to check
(exit 2); device strings are made printable and shortened (``edgeq.text``). Progress lines
only drive the progress bar, so a malformed one is ignored rather than fatal.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Optional

from edgeq.remote.common import CommandResult, command_error, tail
from edgeq.remote import device_script as ds
from edgeq.errors import CalibrationError, EdgeqError, ModelError, RemoteError, ToolMissingError, UserError
from edgeq.text import one_line, printable, shorten

INSTALL_HINT = ("on the device: python3 -m pip install ai-edge-litert numpy "
                "(tflite-runtime on older 32-bit Raspberry Pi OS), or point --python at a Python that has them")
PROTOCOL_HINT = ("check that --python names a real Python interpreter on the device (not a wrapper that prints "
                 "its own output) and that nothing there (a shell profile, sitecustomize) writes to stdout or "
                 "stderr; --keep-remote keeps the uploaded files for a manual run")
PHASES = ("warmup", "timed", "eval")
TEXT_WIDTH = 200  # longest device string kept (OS, CPU, versions, output names)
MESSAGE_WIDTH = 2000  # longest device error message kept
MAX_OUTPUTS = 1024
MAX_RANK = 16
_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32",
           "float64")
_FLOATS = ("min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "std_ms", "init_ms", "first_inference_ms",
           "import_ms")
_TEXTS = ("interpreter", "interpreter_version", "delegate")
_VERSION = re.compile(r"\d{1,3}\.\d{1,3}(\.\d{1,6})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEVICE_ERRORS: dict[str, tuple[type[EdgeqError], Optional[str]]] = {
    "no_interpreter": (ToolMissingError, INSTALL_HINT), "no_numpy": (ToolMissingError, INSTALL_HINT),
    "model": (ModelError, None), "eval_data": (CalibrationError, None),
    "no_xnnpack_switch": (UserError, "upgrade the device's interpreter, or leave XNNPACK on"),
    "internal": (RemoteError, "an unexpected failure in the device script or the device's interpreter; "
                 "--keep-remote keeps the script for a manual run"),
}


class _Malformed(Exception):
    """A field failed its check; ``protocol_error`` turns it into the user's message."""


def protocol_error(host: str, what: str, result: Optional[CommandResult] = None) -> RemoteError:
    """``host`` sent something edgeq's device script never sends: say what, and what to check."""
    text = tail(result.stderr, result.stdout, lines=5) if result is not None else ""
    return RemoteError(f"{printable(host, keep='')}: unexpected answer from the device: {what}"
                       + (f"\n{text}" if text else ""), hint=PROTOCOL_HINT)


def _shown(text: str, width: int = 80) -> str:
    return repr(shorten(printable(text, keep=""), width))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # "[[[[..." nested deeper than Python's stack
        raise _Malformed("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer longer than Python converts
        raise _Malformed(f"not valid JSON ({printable(str(exc), keep='')})") from None


def parse_pid(host: str, line: str) -> int:
    """The device script's pid from ``EDGEQ-PID <pid>``; a malformed line ends the run.

    Why fatal: the pid is what the host kills on Ctrl-C or a timeout; a process that cannot
    name itself correctly is not edgeq's script, and guessing could signal the wrong process.
    """
    value = line[len(ds.PID_PREFIX):].strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 10 and 2 <= int(value) < 2**31):
        raise protocol_error(host, f"malformed PID line {_shown(line)} (expected 'EDGEQ-PID <process id>')")
    return int(value)


def parse_progress(line: str) -> Optional[tuple[str, int]]:
    """(phase, done) from ``EDGEQ-PROGRESS {json}``, or None for anything malformed (ignored)."""
    try:
        step = _json(line[len(ds.PROGRESS_PREFIX):])
    except _Malformed:
        return None
    if not isinstance(step, dict) or step.get("phase") not in PHASES:
        return None
    done = step.get("done")
    return (step["phase"], done) if type(done) is int and done >= 0 else None


def _field(doc: dict[str, Any], name: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
    """``doc[name]`` if it has one of ``kinds`` (bool is not an int here); else _Malformed."""
    if name not in doc:
        if optional:
            return None
        raise _Malformed(f"field {name!r} is missing")
    value = doc[name]
    if value is None and optional:
        return None
    if type(value) not in kinds:
        expected = " or ".join(k.__name__ for k in kinds)
        raise _Malformed(f"field {name!r} is {type(value).__name__}, expected {expected}")
    return value


def _number(doc: dict[str, Any], name: str) -> float:
    raw = _field(doc, name, (int, float))
    value = float(raw) if abs(raw) < 1e300 else math.inf  # float(10**400) would raise OverflowError
    if not math.isfinite(value) or value < 0:
        raise _Malformed(f"field {name!r} is {value}, expected a finite number >= 0")
    return value


def _count(doc: dict[str, Any], name: str, optional: bool = False) -> Optional[int]:
    value = _field(doc, name, (int,), optional)
    if value is not None and not 0 <= value < 2**63:
        raise _Malformed(f"field {name!r} is {shorten(str(value), 30)}, expected a count >= 0")
    return value


def _text(doc: dict[str, Any], name: str, optional: bool = False) -> Optional[str]:
    value = _field(doc, name, (str,), optional)
    return None if value is None else one_line(value, TEXT_WIDTH)


def probe_document(host: str, address: str, result: CommandResult) -> dict[str, Any]:
    """The probe's JSON, every field checked and printable; raises RemoteError if malformed."""
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(ds.PROBE_PREFIX)]
    if not lines:
        if result.exit_status != 0:
            raise command_error(address, result)
        raise protocol_error(host, f"the probe printed no {ds.PROBE_PREFIX.strip()} line", result)
    try:
        data = _json(lines[-1][len(ds.PROBE_PREFIX):])
        if not isinstance(data, dict):
            raise _Malformed(f"a JSON {type(data).__name__}, expected an object")
        python = _text(data, "python") or ""
        if not _VERSION.fullmatch(python):
            raise _Malformed(f"field 'python' is {_shown(python)}, expected a version like 3.11.2")
        modules = _field(data, "modules", (dict,))
        clean = {"python": python, "modules": {}}
        for name in (*ds.BACKENDS, "numpy"):
            clean["modules"][name] = _text(modules, name, optional=True)
        for name in ("executable", "system", "release", "machine"):
            clean[name] = _text(data, name, optional=True) or "unknown"
        clean["cpu"] = _text(data, "cpu", optional=True)
        clean["cores"] = _count(data, "cores", optional=True)
        clean["mem_total_bytes"] = _count(data, "mem_total_bytes", optional=True)
    except _Malformed as exc:
        raise protocol_error(host, f"its probe answer is malformed: {exc}") from None
    return clean


def parse_device_document(host: str, address: str, result: CommandResult) -> dict[str, Any]:
    """The device script's result (last JSON line on stdout), checked; or the error it reported."""
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        if result.exit_status != 0:
            raise command_error(address, result)
        raise protocol_error(host, "the device script exited without printing a result", result)
    try:
        document = _json(lines[-1])
        if not isinstance(document, dict):
            raise _Malformed(f"a JSON {type(document).__name__}, expected an object")
    except _Malformed as exc:
        if result.exit_status != 0:  # it crashed mid-line: the exit status and output explain more
            raise command_error(address, result) from None
        raise protocol_error(host, f"its result is {exc} (truncated output?)") from None
    if "error" in document:
        raise _device_error(host, document["error"])
    if result.exit_status != 0:
        raise command_error(address, result)
    try:
        return _result_fields(document)
    except _Malformed as exc:
        raise protocol_error(host, f"its result is malformed: {exc}") from None


def _device_error(host: str, error: Any) -> EdgeqError:
    """The error the device script reported, mapped to the matching EdgeqError class."""
    if not isinstance(error, dict) or type(error.get("kind")) is not str or type(error.get("message")) is not str:
        return protocol_error(host, f"malformed error report {_shown(json.dumps(error, default=str))}")
    cls, hint = _DEVICE_ERRORS.get(error["kind"], (RemoteError, None))
    message = shorten(printable(error["message"]).strip(), MESSAGE_WIDTH)
    return cls(f"{printable(host, keep='')}: {message}", hint=hint)


def _result_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """Exactly the measurement fields BenchResult takes from a device, checked, plus outputs and eval."""
    clean: dict[str, Any] = {name: _number(doc, name) for name in _FLOATS}
    clean["peak_rss_bytes"] = _count(doc, "peak_rss_bytes")
    for name in _TEXTS:
        clean[name] = _text(doc, name)
    outputs = _field(doc, "outputs", (list,))
    if len(outputs) > MAX_OUTPUTS:
        raise _Malformed(f"{len(outputs)} outputs (more than {MAX_OUTPUTS})")
    clean["outputs"] = [_output(entry, i) for i, entry in enumerate(outputs)]
    evaluation = _field(doc, "eval", (dict,), optional=True)
    clean["eval"] = None if evaluation is None else _evaluation(evaluation)
    return clean


def _output(entry: Any, index: int) -> dict[str, Any]:
    """One output tensor entry: a known dtype, a plausible shape, data of exactly that size."""
    import numpy as np

    if not isinstance(entry, dict):
        raise _Malformed(f"output {index} is a JSON {type(entry).__name__}, expected an object")
    try:
        dtype = _field(entry, "dtype", (str,))
        if dtype not in _DTYPES:
            raise _Malformed(f"dtype {_shown(dtype)} is not a numeric tensor type")
        shape = _field(entry, "shape", (list,))
        if len(shape) > MAX_RANK or any(type(d) is not int or not 0 <= d < 2**31 for d in shape):
            raise _Malformed("shape is not a list of up to 16 sizes >= 0")
        digest = _field(entry, "sha256", (str,))
        if not _SHA256.fullmatch(digest):
            raise _Malformed("sha256 is not 64 hex digits")
        clean = {"name": _text(entry, "name", optional=True) or "", "dtype": dtype, "shape": shape, "sha256": digest}
        data = _field(entry, "data_b64", (str,), optional=True)
        if data is not None:
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise _Malformed("data_b64 is not base64") from None
            if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
                raise _Malformed(f"data_b64 holds {len(raw)} bytes, not what shape {shape} of {dtype} needs")
            clean["data_b64"] = data
    except _Malformed as exc:
        raise _Malformed(f"output {index}: {exc}") from None
    return clean


def _evaluation(doc: dict[str, Any]) -> dict[str, Any]:
    samples = _count(doc, "samples")
    predictions = _field(doc, "predictions", (list,))
    if len(predictions) != samples or any(type(p) is not int for p in predictions):
        raise _Malformed(f"eval predictions are not {samples} whole numbers")
    accuracy = _field(doc, "accuracy", (int, float), optional=True)
    if accuracy is not None and math.isnan(accuracy):
        accuracy = None  # no samples: the device's numpy says nan
    if accuracy is not None and not 0 <= accuracy <= 1:
        raise _Malformed(f"eval accuracy {accuracy} is not in 0..1")
    return {"samples": samples, "predictions": predictions, "accuracy": accuracy}


__all__ = ["INSTALL_HINT", "PROTOCOL_HINT", "PHASES", "parse_pid", "parse_progress", "probe_document",
           "parse_device_document", "protocol_error"]
