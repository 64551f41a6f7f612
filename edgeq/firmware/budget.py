"""Does the model fit the target? Flash = model + runtime code, RAM = arena + runtime RAM.

Why estimates for the runtime: the exact TFLM code size depends on the ops linked, the
compiler and its flags; each target carries a measured ``runtime_code_bytes`` (TFLM +
CMSIS-NN + newlib for a small CNN, -O2, --gc-sections, see README "Budget check") and
``runtime_ram_bytes`` (stack, interpreter object, stdio buffers). The check is there to
stop an obviously impossible build early with numbers, not to replace the linker map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edgeq.firmware.arena import ArenaFigure, target_arena
from edgeq.errors import BudgetError, UserError
from edgeq.firmware.targets import Target
from edgeq.model.tflite_info import ModelInfo, parse


@dataclass(frozen=True)
class BudgetFigures:
    """Flash and RAM needed vs available (``None`` limit: the target has no budget)."""

    target: str
    model_bytes: int
    runtime_code_bytes: int
    flash_used: int
    flash_limit: int | None
    arena_bytes: int
    runtime_ram_bytes: int
    ram_used: int
    ram_limit: int | None
    arena: ArenaFigure
    allowed_over_budget: bool = False
    psram_limit: int | None = None
    arena_in_psram: bool = False

    @property
    def over_flash(self) -> bool:
        return self.flash_limit is not None and self.flash_used > self.flash_limit

    @property
    def over_ram(self) -> bool:
        return self.ram_limit is not None and self.ram_used > self.ram_limit

    @property
    def ok(self) -> bool:
        return not (self.over_flash or self.over_ram)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "flash": {"used": self.flash_used, "limit": self.flash_limit, "model_bytes": self.model_bytes,
                      "runtime_code_bytes": self.runtime_code_bytes, "over": self.over_flash},
            "ram": {"used": self.ram_used, "limit": self.ram_limit, "arena_bytes": self.arena_bytes,
                    "runtime_ram_bytes": self.runtime_ram_bytes, "over": self.over_ram},
            "psram": {"limit": self.psram_limit, "arena_in_psram": self.arena_in_psram},
            "arena": self.arena.to_dict(),
            "ok": self.ok,
            "allowed_over_budget": self.allowed_over_budget,
        }


def _limit(override: int | None, default: int | None, what: str) -> int | None:
    if override is None:
        return default
    if override <= 0:
        raise UserError(f"--{what} must be a positive number of bytes, got {override}")
    return override


def check_budget(
    *,
    tflite: bytes,
    target: Target,
    host_arena_bytes: int,
    info: ModelInfo | None = None,
    flash: int | None = None,
    ram: int | None = None,
    allow_over_budget: bool = False,
) -> BudgetFigures:
    """Compute the target arena and the budget figures; raise ``BudgetError`` if over.

    Call it before writing anything (``edgeq build`` does); ``write_firmware`` calls it
    again with the same inputs, so the figures in the report and the sources agree.
    ``info`` saves a re-parse when the caller has it.
    """
    info = info if info is not None else parse(tflite)
    arena = target_arena(host_arena_bytes, tflite=tflite, target=target)
    figures = BudgetFigures(
        target=target.name,
        model_bytes=info.size_bytes,
        runtime_code_bytes=target.runtime_code_bytes,
        flash_used=info.size_bytes + target.runtime_code_bytes,
        flash_limit=_limit(flash, target.flash_bytes, "flash"),
        arena_bytes=arena.target_bytes,
        runtime_ram_bytes=target.runtime_ram_bytes,
        ram_used=arena.target_bytes + target.runtime_ram_bytes,
        ram_limit=_limit(ram, target.ram_bytes, "ram"),
        arena=arena,
        allowed_over_budget=allow_over_budget,
    )
    psram = target.psram_bytes
    if figures.over_ram and psram is not None and arena.target_bytes <= psram:
        # The arena moves to external PSRAM (16-byte aligned heap allocation at start-up);
        # internal RAM then holds only the runtime. Slower, but it runs.
        figures = replace(figures, ram_used=target.runtime_ram_bytes, psram_limit=psram, arena_in_psram=True)
    elif psram is not None:
        figures = replace(figures, psram_limit=psram)
    if figures.ok or allow_over_budget:
        return figures
    problems = []
    if figures.over_flash:
        problems.append(
            f"flash {figures.flash_used:,} B needed (model {figures.model_bytes:,} + TFLM runtime ~{figures.runtime_code_bytes:,})"
            f" > {figures.flash_limit:,} B available"
        )
    if figures.over_ram:
        problems.append(
            f"RAM {figures.ram_used:,} B needed (tensor arena {figures.arena_bytes:,} + runtime ~{figures.runtime_ram_bytes:,})"
            f" > {figures.ram_limit:,} B available"
            + (f", and the arena exceeds the {psram:,} B of PSRAM too" if psram is not None else "")
        )
    psram_hint = "" if psram is not None else " or with PSRAM (e.g. esp32s3)"
    raise BudgetError(
        f"the model does not fit target {target.name!r}: " + "; ".join(problems),
        hint="shrink the model (fewer channels, smaller input; int8 if it is not: --mode int8), "
        f"pick a board with more memory{psram_hint} (`edgeq targets`), give your part's real sizes with "
        "--flash/--ram, or pass --allow-over-budget",
    )


__all__ = ["BudgetFigures", "check_budget"]
