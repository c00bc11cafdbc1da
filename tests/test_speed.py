"""Fast by default where bf16 is native (hvc/speed.py): the detection, and the settings
``python -m hvc.segment`` resolves from it, --exact and single options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import hvc.speed as speed
from hvc.data.palette import save_indexed_png
from hvc.demo.video import render_video
from hvc.errors import UsageError
from hvc.exports import Mp4Writer
from hvc.segment import Options, segment
from hvc.segment.__main__ import parse_args
from hvc.speed import EXACT, FAST, default_speed, mode_of, native_bf16


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool, cap: str | None = None):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)


@pytest.mark.parametrize("avx512_bf16, amx, cap, native, why", [
    (True, False, None, True, "AVX512_BF16"),
    (False, True, None, True, "AMX"),
    (True, True, "AVX512_CORE_AMX", True, "AMX"),
    (True, False, "AVX512_CORE_BF16", True, "AVX512_BF16"),
    (True, False, "AVX2", False, "capped at AVX2"),       # what tests/conftest.py sets
    (True, False, "avx512_core", False, "capped at avx512_core"),
    (False, False, None, False, "no native bf16"),
])
def test_native_bf16_on_cpus(monkeypatch, avx512_bf16, amx, cap, native, why):
    _cpu(monkeypatch, avx512_bf16, amx, cap)
    got, reason = native_bf16("cpu")
    assert got == native and why in reason
    mode, settings, _ = default_speed("cpu")
    assert (mode, settings) == (("fast", FAST) if native else ("exact", EXACT))
    assert default_speed("cpu", exact=True)[:2] == ("exact", EXACT)


def test_native_bf16_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert native_bf16("cuda") == (False, "CUDA is not available")
    assert native_bf16("not-a-device")[0] is False  # reported by the run itself (exit 5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in [((8, 0), True), ((9, 0), True), ((7, 5), False)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert native_bf16("cuda:0")[0] is native


def test_the_command_line_resolves_the_mode(monkeypatch, tmp_path):
    args = [str(tmp_path / "clip.mp4"), "--mask", "first.png"]
    monkeypatch.setattr(speed, "native_bf16", lambda device: (True, "this CPU has AVX512_BF16"))
    opts = parse_args(args)
    assert (opts.encoder, opts.precision, opts.search_dims, opts.candidates) == ("bf16", "bf16", 64, 1.5)
    assert opts.speed_note.startswith("speed: fast (") and "AVX512_BF16" in opts.speed_note and "--exact" in opts.speed_note
    opts = parse_args([*args, "--exact"])
    assert (opts.encoder, opts.precision, opts.search_dims, opts.candidates) == ("exact", "fp32", None, 2.0)
    assert opts.speed_note.startswith("speed: exact (") and "--exact" in opts.speed_note
    opts = parse_args([*args, "--search-dims", "all", "--candidates", "2"])
    assert (opts.encoder, opts.precision, opts.search_dims, opts.candidates) == ("bf16", "bf16", None, 2.0)
    assert opts.speed_note.startswith("speed: custom (bf16 encoder, bf16 search, all search dims, 2x candidates")
    with pytest.raises(UsageError, match="--exact runs the exact arithmetic; leave out --precision"):
        parse_args([*args, "--exact", "--precision", "bf16"])

    monkeypatch.setattr(speed, "native_bf16", lambda device: (False, "this CPU has no native bf16"))
    opts = parse_args(args)
    assert (opts.encoder, opts.precision, opts.search_dims, opts.candidates) == ("exact", "fp32", None, 2.0)
    assert opts.speed_note == "speed: exact (float32 encoder and search; this CPU has no native bf16)"
    assert mode_of(FAST) == "fast" and mode_of(EXACT) == "exact"


def test_a_fast_run_follows_the_objects_and_records_its_mode(tmp_path):
    """The fast settings end to end (bf16 emulated here when oneDNN is capped: slow, same result
    kind): the objects are followed, and the summary says which mode ran; the encoder mode is a
    setting, so an exact run's folder refuses it."""
    frames, labels = render_video(num_frames=6, height=96, width=160)
    with Mp4Writer(tmp_path / "clip.mp4", 12) as video:
        for f in frames:
            video.write(f)
    save_indexed_png(tmp_path / "first.png", labels[0])
    opts = dict(video=tmp_path / "clip.mp4", mask=tmp_path / "first.png", context=2, save=("palette",))
    fast = dict(encoder=FAST.encoder, precision=FAST.precision, search_dims=FAST.search_dims,
                candidates=FAST.candidates)
    exact = segment(Options(output=tmp_path / "exact", **opts))
    assert exact["speed"]["mode"] == "exact" and exact["encoder"] == "exact"
    summary = segment(Options(output=tmp_path / "fast", speed_note="speed: fast (test)", **opts, **fast))
    assert summary["speed"] == {"mode": "fast", "note": "speed: fast (test)"} and summary["encoder"] == "bf16"
    for t in range(1, 6):  # approximate, not another segmentation: the same objects as the exact run's
        a, b = (np.array(Image.open(tmp_path / run / "masks" / f"{t:05d}.png")) for run in ("fast", "exact"))
        ious = [((a == o) & (b == o)).sum() / ((a == o) | (b == o)).sum() for o in (1, 2)]
        assert min(ious) > 0.8, (t, ious)
    assert json.loads((tmp_path / "fast" / ".hvc" / "segment.json").read_text())["settings"]["encoder"] == "bf16"
    with pytest.raises(Exception, match="other settings"):
        segment(Options(output=tmp_path / "exact", **opts, **fast))
