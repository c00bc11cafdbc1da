"""Fast by default where users wait: whether a device computes bfloat16 natively, and the ``fast`` and ``exact``
modes of ``python -m hvc.segment`` (docs/segment.md, "Speed"; ``test.py`` keeps the paper's exact protocol)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class SpeedSettings:
    encoder: str = "exact"  # run.encoder: exact | fused | bf16 (hvc/models/fast_encoder.py)
    precision: str = "fp32"  # prop.precision: fp32 | bf16 (docs/local_kernel.md)
    search_dims: Optional[int] = None  # prop.search_dims: None = all channels
    candidates: float = 2.0  # prop.candidates, in units of topk

    def describe(self) -> str:
        if self == EXACT:
            return "float32 encoder and search"
        dims = "all search dims" if self.search_dims is None else f"{self.search_dims} search dims"
        return f"{self.encoder} encoder, {self.precision} search, {dims}, {self.candidates:g}x candidates"


EXACT = SpeedSettings()
# 2.27x faster than exact at about the same J&F (docs/segment.md, "Speed"; docs/speed.md)
FAST = SpeedSettings(encoder="bf16", precision="bf16", search_dims=64, candidates=1.5)

_BF16_ISA_WORDS = ("BF16", "AMX", "AVX10", "FP16", "ALL", "DEFAULT")  # oneDNN ISA caps that keep native bf16


def native_bf16(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """(whether ``device`` computes bfloat16 natively, why in a few words): a CPU with AVX512_BF16 or AMX and oneDNN
    not capped below them (``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``), or a GPU of compute capability 8.0+."""
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError):
        return False, f"unknown device {device!r}"  # the run itself reports it (exit 5)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        major, minor = torch.cuda.get_device_capability(device)
        too_old = "" if major >= 8 else " (bf16 needs 8.0 or later)"
        return major >= 8, f"a GPU of compute capability {major}.{minor}{too_old}"
    if device.type != "cpu":
        return False, f"{device.type} devices are not checked for bf16"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if cap and not any(word in cap.upper() for word in _BF16_ISA_WORDS):
        return False, f"oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA)"
    if torch.cpu._is_amx_tile_supported():  # torch's cpuinfo (torch >= 2.2)
        return True, "this CPU has AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return True, "this CPU has AVX512_BF16"
    return False, "this CPU has no native bf16 (AVX512_BF16 or AMX)"


def default_speed(device: torch.device | str = "cpu", exact: bool = False) -> tuple[str, SpeedSettings, str]:
    """(mode name, settings, why) of the default for ``device``: ``fast`` where bf16 is native and not ``exact``."""
    if exact:
        return "exact", EXACT, "asked for (--exact)"
    native, why = native_bf16(device)
    return ("fast", FAST, why) if native else ("exact", EXACT, why)


def mode_of(settings: SpeedSettings) -> str:
    """``exact``, ``fast`` or ``custom`` (any other combination)."""
    return "exact" if settings == EXACT else "fast" if settings == FAST else "custom"
