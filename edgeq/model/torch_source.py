"""PyTorch models as edgeq input: a ``torch.export`` program (``.pt2``) or a ``pkg.module:factory``.

Why ``torch.export`` and not ``torch.save``/TorchScript: PT2E quantization and litert-torch both
start from an exported graph, and a ``.pt2`` (``torch.export.save``) is the format ExecuTorch and
litert-torch share. A factory (``(nn.Module, example_inputs)``) is exported here, once, so the rest
of edgeq sees one thing: a :class:`TorchModel` holding an ``ExportedProgram``.

torch is imported lazily (``edgeq --help`` and Keras models never pay for it); without it a
PyTorch input is a :class:`UserError` naming the ``edgeq[torch]`` extra and the CPU-only wheel.
The float program here is also the validation reference (:meth:`TorchModel.predict`).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeq.text import first_line
from edgeq.errors import CalibrationError, ModelError, UserError

#: What to run when torch (or litert-torch) is missing. torch from PyPI pulls ~2.7 GB of CUDA
#: wheels; the CPU-only wheel is all edgeq needs.
INSTALL_HINT = ("pip install 'edgeq[torch]'; for a CPU-only torch (no CUDA downloads) first run "
                "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
#: Modules of eager-mode ``torch.ao`` quantization: their packed params do not export or convert.
_EAGER_QUANTIZED = ("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized",
                    "torch.nn.intrinsic.quantized", "torch.ao.nn.quantized.dynamic")
#: Op namespaces that mean "already quantized": eager quantized kernels or PT2E's QDQ pairs.
_QUANTIZED_OPS = ("quantized.", "quantized_decomposed.", "torchao.")
_PREDICT_BATCH = 64


class TorchTensor(NamedTuple):
    """One input or output as PyTorch sees it: ``shape`` in the model's own layout (NCHW for a
    Conv2d input), ``None`` where the program accepts any size (a dynamic batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


def require_torch() -> Any:
    """``import torch``, or a UserError that says how to install it without CUDA."""
    try:
        import torch
    except ImportError as exc:
        raise UserError(f"PyTorch models need torch, which is not installed ({exc})", hint=INSTALL_HINT) from None
    return torch


@dataclass(frozen=True)
class TorchModel:
    """A float PyTorch model ready for quantization: always an ``ExportedProgram``.

    ``fixed_batch`` is the batch the program was exported with when that dimension is static
    (usually 1), ``None`` when it is dynamic: a static program must be *run* in chunks of
    exactly that size, and QAT has to re-export it with a dynamic batch to train.
    """

    source: str
    program: Any = field(repr=False)
    inputs: tuple[TorchTensor, ...]
    outputs: tuple[TorchTensor, ...]
    fixed_batch: int | None
    _runner: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    def module(self) -> Any:
        """The program as a callable ``GraphModule`` (built once; it inlines the weights)."""
        if not self._runner:
            self._runner.append(self.program.module())
        return self._runner[0]

    def predict(self, xs: Sequence[np.ndarray], batch_size: int = _PREDICT_BATCH) -> list[np.ndarray]:
        """Run the float model on ``xs`` (one array per input, model layout, same length):
        the reference the quantized model is validated against."""
        torch = require_torch()
        arrays = check_arrays(self, xs, "data")
        n = len(arrays[0])
        step = self.fixed_batch or max(1, batch_size)
        outs: list[list[np.ndarray]] = []
        with torch.no_grad():
            for start in range(0, n, step):
                idx = _chunk(start, step, n, padded=self.fixed_batch is not None)
                args = [torch.from_numpy(np.ascontiguousarray(a[idx])) for a in arrays]
                try:
                    result = self.module()(*args)
                except Exception as exc:  # a user's model: anything can fail
                    raise ModelError(f"{self.source}: the float model failed on a batch of {len(idx)}: "
                                     f"{type(exc).__name__}: {first_line(exc)}",
                                     hint="check the data's shape against the model's inputs") from None
                flat = _flatten_outputs(torch, result)
                keep = min(step, n - start)
                outs.append([o.detach().cpu().numpy()[:keep] for o in flat])
        return [np.concatenate([batch[i] for batch in outs]) for i in range(len(outs[0]))] if outs else []


def check_arrays(model: TorchModel, xs: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """``xs`` as float arrays, one per input with the model's per-sample shape, or a
    CalibrationError naming the input: shape mistakes must not surface as torch tracebacks."""
    if len(xs) != len(model.inputs):
        raise CalibrationError(f"{what}: {len(xs)} arrays for a model with {len(model.inputs)} inputs "
                               f"({', '.join(t.name for t in model.inputs)})",
                               hint="give one array per model input, in the model's input order")
    out, n = [], None
    for spec, x in zip(model.inputs, xs):
        a = np.asarray(x)
        want = spec.shape[1:]
        if a.ndim != len(spec.shape) or any(w is not None and w != g for w, g in zip(want, a.shape[1:])):
            shown = "x".join("?" if d is None else str(d) for d in want)
            raise CalibrationError(f"{what}: input {spec.name!r} has samples of shape {a.shape[1:]}, "
                                   f"the model wants {shown} ({_layout_word(spec)})",
                                   hint="PyTorch models take data in their own layout (NCHW for images)")
        if n is not None and len(a) != n:
            raise CalibrationError(f"{what}: inputs have different sample counts ({n} and {len(a)})")
        n = len(a)
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise CalibrationError(f"{what}: input {spec.name!r} is {a.dtype}, not numbers")
        out.append(a.astype(_numpy_dtype(spec), copy=False))
    if not n:
        raise CalibrationError(f"{what}: no samples")
    return out


def load_torch(spec: str) -> TorchModel:
    """Load ``spec``: a ``.pt2`` path or ``pkg.module:factory``. Errors are one line with a hint."""
    torch = require_torch()
    path = Path(spec)
    if _FACTORY.match(spec) and not path.exists():
        return _from_factory(torch, spec)
    if not path.exists():
        raise UserError(f"{spec}: no such file", hint="give a .pt2 saved with torch.export.save, or pkg.module:factory")
    if not path.is_file():
        raise UserError(f"{spec} is not a file", hint="give a .pt2 saved with torch.export.save")
    try:
        with _quiet_torch_logs():
            program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many kinds here (zip, json, pickle, version)
        raise ModelError(f"{spec} is not a torch.export program ({type(exc).__name__}: {first_line(exc)})",
                         hint="save the model with torch.export.save(torch.export.export(model, example_inputs), "
                              "'model.pt2'); torch.save / TorchScript files are not accepted") from None
    if not isinstance(program, torch.export.ExportedProgram):
        raise ModelError(f"{spec} holds a {type(program).__name__}, not a torch.export.ExportedProgram",
                         hint="save it with torch.export.save")
    return _describe(torch, spec, program)


@contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch logs the errors it is about to raise (``torch.export.load`` of a non-zip file, a
    failed dynamic-batch export's fake-tensor trace) straight to stderr; edgeq reports them
    itself, as one line, so silence logging for the duration of the call."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


# ----------------------------------------------------------------------------- factory
@contextmanager
def _cwd_on_path() -> Iterator[None]:
    """The current folder on ``sys.path`` while importing: the ``edgeq`` console script, unlike
    ``python -m``, does not put it there, and users expect ``edgeq build mymodels:cnn`` to work."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _from_factory(torch: Any, spec: str) -> TorchModel:
    module_name, _, attr = spec.partition(":")
    hint = "a factory is a function in an importable module (current folder or PYTHONPATH) returning (nn.Module, example_inputs)"
    with _cwd_on_path():
        try:
            mod = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise UserError(f"{spec}: no module named {module_name!r}", hint=hint) from None
            raise ModelError(f"{spec}: importing {module_name} failed: {type(exc).__name__}: {first_line(exc)}",
                             hint="install what the module imports") from None
        except Exception as exc:
            raise ModelError(f"{spec}: importing {module_name} failed: {type(exc).__name__}: {first_line(exc)}",
                             hint="fix the module so that it imports cleanly") from None
    factory = getattr(mod, attr, None)
    if factory is None or not callable(factory):
        raise UserError(f"{spec}: {module_name} has no function {attr!r}" if factory is None
                        else f"{spec}: {attr} is a {type(factory).__name__}, not a function", hint=hint)
    try:
        made = factory()
    except Exception as exc:
        raise ModelError(f"{spec}: the factory raised {type(exc).__name__}: {first_line(exc)}", hint=hint) from None
    if not (isinstance(made, (tuple, list)) and len(made) == 2 and isinstance(made[0], torch.nn.Module)):
        raise ModelError(f"{spec}: the factory returned {_kind(made)}, not (nn.Module, example_inputs)", hint=hint)
    module, examples = made
    examples = (examples,) if isinstance(examples, torch.Tensor) else examples
    if not (isinstance(examples, (tuple, list)) and examples
            and all(isinstance(e, torch.Tensor) and e.ndim >= 1 for e in examples)):
        raise ModelError(f"{spec}: example_inputs is {_kind(examples)}, not a tuple of batched tensors", hint=hint)
    refuse_eager_quantized(torch, module, spec)
    return _describe(torch, spec, _export(torch, spec, module.eval(), tuple(examples)))


def refuse_eager_quantized(torch: Any, module: Any, spec: str) -> None:
    """Eager-mode ``torch.ao`` quantized modules keep their weights in packed C++ params that
    ``torch.export`` cannot flatten (``Conv2dPackedParamsBase ... __obj_flatten__``): refuse them
    with the reason instead of a crash, and say what to hand over instead."""
    for name, sub in module.named_modules():
        kind = type(sub).__module__
        packed = any(isinstance(v, torch._C.ScriptObject) for v in vars(sub).values())
        qtensor = any(t.is_quantized for t in list(sub.parameters(recurse=False)) + list(sub.buffers(recurse=False)))
        if kind.startswith(_EAGER_QUANTIZED) or packed or qtensor:
            where = name or "the model"
            raise ModelError(f"{spec}: {where} ({type(sub).__name__}) is an eager-mode torch.ao quantized module, "
                             "which cannot be exported or converted",
                             hint="give edgeq the float model: it quantizes with PT2E itself (PTQ, or --qat)")


def _export(torch: Any, spec: str, module: Any, examples: tuple[Any, ...]) -> Any:
    """Export with a dynamic batch when the model allows it (QAT and batched validation need
    it), else with the examples' static shapes. A batch of 1 would be specialized by export
    (0/1 specialization), so the examples are repeated to a batch of 2 for the dynamic try."""
    batch = torch.export.Dim("batch")
    doubled = tuple(e if e.shape[0] > 1 else torch.cat([e, e]) for e in examples)
    try:
        with _quiet_torch_logs():
            return torch.export.export(module, doubled, dynamic_shapes=tuple({0: batch} for _ in doubled))
    except Exception:  # the model pins its batch: fall back to the examples as given
        pass
    try:
        with _quiet_torch_logs():
            return torch.export.export(module, examples)
    except Exception as exc:
        raise ModelError(f"{spec}: torch.export failed: {type(exc).__name__}: {first_line(exc)}",
                         hint="the model must be exportable with torch.export.export(model, example_inputs)") from None


# ----------------------------------------------------------------------------- description
def _describe(torch: Any, spec: str, program: Any) -> TorchModel:
    sig = program.graph_signature
    nodes = {n.name: n for n in program.graph.nodes}
    refuse_quantized_program(spec, program)
    inputs = tuple(_tensor(torch, spec, name, nodes[name].meta.get("val")) for name in sig.user_inputs)
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    out_vals = [a.meta.get("val") if hasattr(a, "meta") else a for a in out_node.args[0]]
    outputs = tuple(_tensor(torch, spec, name, v) for name, v in zip(sig.user_outputs, out_vals))
    if not inputs or not outputs:
        raise ModelError(f"{spec}: the program has no {'inputs' if not inputs else 'outputs'}",
                         hint="export a model that takes and returns tensors")
    if any(not t.shape for t in inputs):
        raise ModelError(f"{spec}: an input is a scalar", hint="export a model whose inputs have a batch dimension")
    batches = {t.shape[0] for t in inputs}
    if len(batches) > 1:
        raise ModelError(f"{spec}: the inputs disagree on the batch dimension "
                         f"({', '.join('dynamic' if b is None else str(b) for b in batches)})",
                         hint="export every input with the same batch: all dynamic (Dim) or all 1")
    return TorchModel(spec, program, inputs, outputs, batches.pop())


def refuse_quantized_program(spec: str, program: Any) -> None:
    """A program that already holds quantized ops (eager ``quantized::`` kernels, PT2E QDQ
    pairs) cannot be re-quantized, and its QDQ form is not what TFLM runs: say so."""
    for node in program.graph.nodes:
        if node.op == "call_function":
            target = str(node.target)
            if target.startswith(_QUANTIZED_OPS):
                raise ModelError(f"{spec}: the program is already quantized ({target} at {node.name})",
                                 hint="save the float program: edgeq quantizes with PT2E itself (PTQ, or --qat)")


def _tensor(torch: Any, spec: str, name: str, val: Any) -> TorchTensor:
    if not isinstance(val, torch.Tensor):
        raise ModelError(f"{spec}: {name} is a {type(val).__name__}, not a tensor",
                         hint="export a model whose inputs and outputs are tensors")
    shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape)
    return TorchTensor(name, shape, str(val.dtype).removeprefix("torch."))


def _flatten_outputs(torch: Any, result: Any) -> list[Any]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        result = list(result.values())
    return [t for t in result if isinstance(t, torch.Tensor)]


def _chunk(start: int, step: int, n: int, *, padded: bool) -> np.ndarray:
    """Indices of one batch; a fixed-batch program gets exactly ``step`` (wrapped around)."""
    stop = start + step
    if not padded or stop <= n:
        return np.arange(start, min(stop, n))
    return np.arange(start, stop) % n


def _numpy_dtype(spec: TorchTensor) -> Any:
    try:
        return np.dtype(spec.dtype)
    except TypeError:
        raise ModelError(f"input {spec.name!r} is {spec.dtype}, which numpy data cannot feed",
                         hint="export the model with float32 inputs") from None


def _layout_word(spec: TorchTensor) -> str:
    return {4: "NCHW", 3: "NCL"}.get(len(spec.shape), "per sample")


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value[:3])})"
    return f"a {type(value).__name__}"
