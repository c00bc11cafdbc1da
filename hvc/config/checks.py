"""Range checks of config values for the schemas' ``validate()``: each raises :class:`ConfigError` naming the key
(``error: prop.topk: must be >= 1, got 0``) before a run writes."""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Callable, Optional, Sequence

from hvc.config.core import ConfigError
from hvc.errors import DeviceError

# What a device setting may name (resolved by hvc.distributed.resolve_device): cpu, cuda, cuda:N.
_DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")


def at_least(key: str, value: Optional[int | float], low: int | float, *, allow_none: bool = False) -> None:
    """``value >= low`` (and finite); None only if ``allow_none``."""
    if value is None and allow_none:
        return
    if value is None or not math.isfinite(value) or value < low:
        raise ConfigError(f"{key}: must be >= {low}{' or null' if allow_none else ''}, got {value}")


def minima(cfg: Any, table: dict[str, int | float], key: Callable[[str], str] = str) -> None:
    """:func:`at_least` for each dotted field of ``cfg`` in ``table`` (field -> lowest value), named ``key(field)``."""
    for name, low in table.items():
        at_least(key(name), operator.attrgetter(name)(cfg), low)


def positive(key: str, value: float) -> None:
    """A finite number > 0 (NaN and inf are refused: they would poison every result silently)."""
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}: must be a finite number > 0, got {value}")


def within(key: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{key}: must lie in [{low}, {high}], got {value}")


def crop(size: int, scale: Sequence[float], ratio: Sequence[float], mean: Sequence[float],
         std: Sequence[float], prefix: str = "") -> None:
    """The one home of the crop-settings rule (TrainConfig.validate; hvc.data.pairs, importing no schema);
    ``prefix`` is the keys' section (``data.``)."""
    at_least(f"{prefix}size", size, 1)
    # a scale above 1 is allowed: that area cannot fit, and the crop falls back to the central one, as officially
    for name, pair, open_low in (("scale", list(scale), False), ("ratio", list(ratio), True)):
        low, high = pair
        if not (math.isfinite(low) and math.isfinite(high) and (low > 0 if open_low else low >= 0) and low <= high):
            raise ConfigError(f"{prefix}{name}: need finite 0 {'<' if open_low else '<='} min <= max, got {pair}")
    mean_std(mean, std, prefix)


def mean_std(mean: Sequence[float], std: Sequence[float], prefix: str = "") -> None:
    """Normalisation statistics (training's and test time's): 3 finite means and 3 finite stds > 0."""
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"{prefix}mean, {prefix}std: need 3 values each, got {list(mean)}, {list(std)}")
    if not all(math.isfinite(v) for v in mean):
        raise ConfigError(f"{prefix}mean: must be finite numbers, got {list(mean)}")
    if not all(math.isfinite(v) and v > 0 for v in std):
        raise ConfigError(f"{prefix}std: must be finite numbers > 0, got {list(std)}")


def check_device_name(key: str, name: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N``, else a DeviceError naming the key (checked without torch)."""
    if not isinstance(name, str) or not _DEVICE_NAME.fullmatch(name):
        raise DeviceError(f"{key}: {name!r} is not a device; use cpu, cuda or cuda:N")
