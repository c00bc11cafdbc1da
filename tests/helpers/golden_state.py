"""Decode the golden HVC state dict of ``<golden>/hybrid_loss/state_codes.npz``.

Format (docs/fixtures.md, "Training objective"): ``state_layout.json`` lists every key of the
official state dict in order with its shape and how it is stored:

- ``codes``: float tensor stored exactly as ``int8 codes/<key>`` times ``2 ** exp/<key>``;
- ``int``: integer buffer (``num_batches_tracked``) stored as ``int/<key>``;
- ``derived_from_online``: a target-network float entry, rebuilt from its online twin:
  case ``"A"`` copies it; case ``"B"`` reverses parameters in flattened order and copies
  BatchNorm statistics.

Decoding is exact, so the state equals the one the official code was run with.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

# target prefix -> the online prefix it is rebuilt from
_TWINS = {"target_encoder.": "online_encoder.", "target_space_projector.": "online_space_projector."}
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _online_twin(key: str) -> str:
    for target, online in _TWINS.items():
        if key.startswith(target):
            return online + key[len(target):]
    raise ValueError(f"{key}: stored as derived_from_online but has no online twin")


def _decode(arrays, key: str, stored: str) -> np.ndarray:
    if stored == "codes":
        scale = np.float32(2.0 ** int(arrays[f"exp/{key}"]))
        return arrays[f"codes/{key}"].astype(np.float32) * scale  # exact: power-of-two scale
    if stored == "int":
        return np.asarray(arrays[f"int/{key}"], dtype=np.int64)
    raise ValueError(f"{key}: unknown storage {stored!r}")


def load_hvc_state(path: str | Path, case: str = "A", export: bool = False) -> "OrderedDict[str, torch.Tensor]":
    """The golden state dict, official key order. ``export=True``: only ``online_encoder.*``,
    prefix stripped (the inference export of the official convert script)."""
    if case not in ("A", "B"):
        raise ValueError(f"case must be 'A' or 'B', got {case!r}")
    path = Path(path)
    layout = json.loads((path.parent / "state_layout.json").read_text())["keys"]
    arrays = np.load(path)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for entry in layout:
        key, stored = entry["key"], entry["stored"]
        if stored == "derived_from_online":
            value = _decode(arrays, _online_twin(key), "codes")
            if case == "B" and not key.endswith(_BN_STATS):
                value = value.reshape(-1)[::-1].reshape(value.shape)
        else:
            value = _decode(arrays, key, stored)
        tensor = torch.from_numpy(np.array(value, order="C", copy=True))  # own memory, 0-d kept
        if list(tensor.shape) != entry["shape"]:
            raise ValueError(f"{path}: {key} decodes to shape {list(tensor.shape)}, layout says {entry['shape']}")
        state[key] = tensor
    if export:
        prefix = "online_encoder."
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
    return state
