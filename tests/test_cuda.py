"""The CUDA paths against independent oracles: ``pytest -m cuda`` on a GPU machine.

Every test takes the ``device`` fixture: its ``cuda`` case carries the ``cuda`` marker (skipped
without CUDA, failed under CI=true where a GPU is visible but cannot be used: tests/conftest.py);
its ``cpu`` case runs the same body on the CPU in the ordinary suite, a dry run that keeps the
bodies working where no GPU is lent (fewer steps or cases where the CUDA case is long).

Oracles, none of them the CUDA code under test:

- one HVC training step (loss, gradients, BatchNorm buffers, EMA target) against the official
  code's CPU fixtures ``tests/golden/hybrid_loss`` (docs/fixtures.md, "Training objective");
- AMP: fp16 with a GradScaler and bf16 against float32 on the same batches of real photos;
- ``channels_last`` against the default layout, same weights and inputs;
- label propagation on the device against ``tests/golden/labelprop``, tie-aware (tests/labels.py);
- ``torchrun --nproc_per_node 1`` (NCCL on CUDA, gloo on the CPU): an interrupted and resumed run
  against one uninterrupted run; DDP + synchronised BatchNorm in a process group of one against
  the plain model;
- a checkpoint written by a CUDA run, read on the CPU: the features of its encoder on the CPU
  against the same encoder on the GPU.

The float32 oracles are compared with TF32 off (``full_float32``): PyTorch lets cuDNN use
TF32 for convolutions by default on Ampere and later, which rounds inputs to 10 mantissa bits
(~1e-3 relative), three orders coarser than the float32 differences these tolerances allow.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from conftest import cuda_unavailable
from helpers.locations import GOLDEN
from helpers.engine_support import REPO, read_log, tiny_config, tiny_image_folder, tiny_overrides
from hvc.checkpoint import load_checkpoint
from hvc.data.pairs import collate_pairs
from hvc.data.vos import FrameDataset, load_sequences
from hvc.distributed import convert_sync_batchnorm, wrap_ddp
from hvc.engine import build_dataset, build_model, build_optimizer, flush_denormal, make_scaler, train, train_step
from hvc.export import encoder_from_checkpoint
from hvc.inference import FeatureExtractor
from hvc.models.encoders import ARCH, load_encoder
from hvc.models.hvc import FlowHead, momentum_at
from hvc.models.loss import hybrid_loss, positive_pairs
from hvc.models.resnet import ResNet
from hvc.propagation import LabelPropagator, embed, upsample_labels
from helpers.labels import assert_labels_match
from test_golden_model import _build, _rel_l2, _t, golden  # noqa: F401 - golden is a fixture
from test_golden_propagation import SOFT_ATOL, _case_names, labelprop  # noqa: F401 - labelprop is a fixture

CUDA = pytest.mark.cuda
COMMITTED = REPO / "checkpoints" / "hvc_bsds_cpu.pth"


@pytest.fixture(params=[pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=CUDA)])
def device(request) -> torch.device:
    """The device a test body runs on: the CPU (dry run) or the first CUDA device."""
    return torch.device("cuda", 0) if request.param == "cuda" else torch.device("cpu")


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """CUDA float32 without TF32 (cuDNN convolutions and matmuls) inside the block; the CPU
    has no TF32, so nothing changes there."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _davis_frame(davis_root: Path, name: str = "blackswan") -> torch.Tensor:
    """Frame 0 of a real DAVIS sequence at 480p, normalised as test.py feeds it: [1, 3, 480, 854]."""
    seq = next(s for s in load_sequences("davis16", str(davis_root), [name]) if s.name == name)
    return FrameDataset(seq, -1, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[0][None]


# ---------------------------------------------------------------------------------------------
# One training step against the official CPU fixtures
# ---------------------------------------------------------------------------------------------

# test_golden_model.py holds the CPU to 1e-5 on the loss and 1e-4 / 1e-3 (early encoder layers)
# on the gradients, measured on oneDNN's AVX2 kernels. cuDNN sums convolutions in other orders;
# the random golden ResNet amplifies a 1e-7 change of the features to 1e-3 on an early gradient
# (tests/conftest.py), so the bands here are ten times the CPU's. A logic error (a wrong term,
# a dropped gradient path, a BatchNorm in the wrong mode) moves these by 1e-1 or more.
STEP_LOSS_ATOL = 1e-4
STEP_GRAD_RTOL = {"early": 1e-2, "late": 1e-3}
STEP_BUFFER_ATOL = 1e-4  # BatchNorm running statistics and the EMA target after the step


def test_golden_training_step_on_device(golden, device):  # noqa: F811 - golden is the imported fixture
    case = golden["cases"][0]  # case A: the one whose gradients the fixture records
    exp = golden["expected"]["case_" + case]
    arrays, inp = golden["arrays"], golden["inputs"]
    views = [_t(inp[k]).flatten(0, 1).to(device) for k in ("vid1", "vid2")]  # [B*T, 3, 64, 64]
    coords = [_t(inp[k]).flatten(0, 1).to(device) for k in ("coord1", "coord2")]
    model = _build(golden, case).to(device)
    with full_float32():
        loss = model(*views, *coords, momentum=momentum_at(exp["current_step_before"],
                                                             golden["expected"]["total_steps"]))
        loss.backward()
    assert loss.device.type == device.type
    assert abs(loss.item() - exp["loss"]) <= STEP_LOSS_ATOL, (loss.item(), exp["loss"])

    params = dict(model.named_parameters())
    keys = [k for k in arrays.files if k.startswith(case + "/grad/")]
    assert keys, "expected.npz holds no recorded gradient: nothing to compare"
    for key in keys:
        name = key.split("/", 2)[2]
        early = name.startswith("online_encoder.") and not name.startswith("online_encoder.layer4.")
        err = _rel_l2(params[name].grad.cpu(), _t(arrays[key]))
        assert err <= STEP_GRAD_RTOL["early" if early else "late"], (key, err)
    state = model.state_dict()
    checked = 0
    for key in (k for k in arrays.files if k.startswith(case + "/buffer_after/") or k.startswith(case + "/target_after/")):
        ref = _t(arrays[key]).double()
        assert (state[key.split("/", 2)[2]].cpu().double() - ref).abs().max().item() <= STEP_BUFFER_ATOL, key
        checked += 1
    assert checked > 0, "expected.npz holds no buffer or target after the step"


# ---------------------------------------------------------------------------------------------
# Mixed precision: fp16 with a GradScaler, bf16
# ---------------------------------------------------------------------------------------------

AMP_STEPS = {"cuda": 50, "cpu": 1}  # the CPU dry run checks the code path, not the curve
AMP_BATCH = {"cuda": 8, "cpu": 2}
# The band of the loss curve: the mean loss of each block of AMP_WINDOW steps within AMP_BAND of
# float32's on the same batches. Both runs start from the same weights; per-step losses of two
# precisions drift apart as the weights do (like two seeds' runs), so steps are compared in
# blocks. Measured with bfloat16 autocast on the CPU (8 mantissa bits, the coarser of the two;
# fp16 has 11), batch 8: first block of 10 steps 0.11 from float32's while the loss fell from
# 0.43 to -1.7; single steps up to 0.75 apart. A run whose scaler skipped every step (the bug
# fixed in hvc/models/loss.py) was 0.67 off in that block. Not yet measured on a GPU.
AMP_WINDOW = 10
AMP_BAND = 0.3
# fp16: the GradScaler starts at 65536 and halves its scale at each overflow; this model's
# gradients reach ~10 (fp16 autocast on the CPU, scale 1), so its first 4-5 steps overflow and
# are skipped while it finds its scale. At most a fifth of the steps (and at least 2, so that the
# CPU dry run's one step may be); a scaler that never settles skips them all.
MAX_SKIPPED = 0.2


def test_fp16_gradients_stay_finite_for_a_sample_without_positive_pairs(device):
    """A crop pair that does not overlap has no positive pair; its 1 / (0 + 1e-6) weight once
    sent a 1e6 gradient into a float16 bmm (inf), so the GradScaler skipped every batch holding
    such a sample (hvc/models/loss.py). Its value stays 0 and the gradients stay finite."""
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 16, 8, 8, generator=g), dim=1).to(device).requires_grad_(True)
    k = torch.nn.functional.normalize(torch.randn(2, 16, 8, 8, generator=g), dim=1).to(device)
    coord_q = torch.tensor([[0.1, 0.1, 0.6, 0.6], [0.0, 0.0, 0.3, 0.3]], device=device)
    coord_k = torch.tensor([[0.2, 0.2, 0.7, 0.7], [0.6, 0.6, 1.0, 1.0]], device=device)  # sample 1: disjoint
    assert positive_pairs(coord_q, coord_k, (8, 8), (8, 8), 0.1).sum(dim=(1, 2)).tolist()[1] == 0
    torch.manual_seed(0)
    flow = FlowHead(16).to(device).train()
    with torch.autocast(device.type, dtype=torch.float16):
        loss = hybrid_loss(q, k, coord_q, coord_k, flow, 0.1)
    (loss * 65536.0).backward()  # the GradScaler's first scale
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters() if p.grad is not None)


def _photo_batches(static_root: Path, tmp_path: Path, n: int, batch: int = 4) -> list[tuple[torch.Tensor, ...]]:
    """``n`` training batches of real BSDS500 crops (64x64), fixed in advance."""
    images = tiny_image_folder(static_root, tmp_path / "imgs", n=40)
    cfg = tiny_config(tmp_path / "unused", images, f"data.batch_size={batch}")
    dataset = build_dataset(cfg.data, cfg.runtime.seed)
    batches: list[tuple[torch.Tensor, ...]] = []
    for epoch in itertools.count():
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate_pairs, drop_last=True,
                            generator=torch.Generator().manual_seed(epoch))
        batches += [tuple(b[:4]) for b in itertools.islice(loader, n - len(batches))]
        if len(batches) == n:
            return batches
    raise AssertionError("unreachable")


def _train_curve(batches, device: torch.device, amp_dtype: Optional[torch.dtype]) -> tuple[list[float], int]:
    """Losses of one run over ``batches`` from the seed-0 model; and how many steps the scaler applied."""
    cfg = tiny_config(Path("unused"), Path("unused"))
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    optimizer = build_optimizer(model, cfg.optim)
    scaler = make_scaler(device, amp_dtype)
    losses, applied = [], 0
    with flush_denormal(device.type == "cpu"):
        for batch in batches:
            before = scaler.get_scale() if scaler.is_enabled() else None
            losses.append(train_step(model, batch, optimizer, scaler, 0.99, device=device, amp_dtype=amp_dtype))
            # a skipped step (inf/NaN gradients) lowers the scale; an applied one keeps or doubles it
            applied += before is None or scaler.get_scale() >= before
    return losses, applied


def test_mixed_precision_follows_float32(static_root, tmp_path, device):
    steps = AMP_STEPS[device.type]
    batches = _photo_batches(static_root, tmp_path, steps, AMP_BATCH[device.type])
    with full_float32():
        reference, _ = _train_curve(batches, device, None)
    window = min(AMP_WINDOW, steps)
    for dtype in (torch.float16, torch.bfloat16):
        losses, applied = _train_curve(batches, device, dtype)
        assert all(np.isfinite(losses)), f"{dtype}: non-finite loss in {losses}"
        allowed = max(2, int(MAX_SKIPPED * steps))
        assert steps - applied <= allowed, f"{dtype}: the GradScaler skipped {steps - applied} of {steps} steps"
        ours = np.asarray(losses[:steps - steps % window]).reshape(-1, window).mean(axis=1)
        ref = np.asarray(reference[:steps - steps % window]).reshape(-1, window).mean(axis=1)
        gap = np.abs(ours - ref).max()
        assert gap <= AMP_BAND, f"{dtype}: block means {ours.round(3)} vs float32 {ref.round(3)}"
    if device.type == "cuda":  # the scaler is the fp16 one; bf16 and float32 run without
        assert make_scaler(device, torch.float16).is_enabled()
        assert not make_scaler(device, torch.bfloat16).is_enabled()


# ---------------------------------------------------------------------------------------------
# channels_last
# ---------------------------------------------------------------------------------------------

# Same float32 arithmetic in another memory layout: the kernels differ (cuDNN / oneDNN pick
# NHWC algorithms), so values agree to float32 noise; a layout bug (a view taken as NCHW) gives
# errors of order 1.
LAYOUT_FEATURE_ATOL = 1e-4  # L2-normalised features, entries ~0.06
LAYOUT_LOSS_ATOL = 1e-4
LAYOUT_GRAD_RTOL = 1e-2  # all gradients together; early layers amplify rounding (see the step test)


def test_channels_last_gives_the_same_outputs(davis_root, static_root, tmp_path, device):
    frame = _davis_frame(davis_root)
    encoder = load_encoder("hvc", str(COMMITTED), bn_dummy_forward_pass=True, device=device)
    with full_float32():
        plain = FeatureExtractor(encoder, device=device)(frame)
        nhwc = FeatureExtractor(encoder, device=device, channels_last=True)(frame)
    assert nhwc.shape == plain.shape == (1, 256, 60, 107)
    assert (nhwc - plain).abs().max().item() <= LAYOUT_FEATURE_ATOL

    batch = _photo_batches(static_root, tmp_path, 1)[0]
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = build_model(tiny_config(tmp_path, tmp_path).model).to(device, memory_format=layout).train()
        views = [v.to(device, memory_format=layout) for v in batch[:2]]
        with full_float32(), flush_denormal(device.type == "cpu"):
            loss = model(*views, *(c.to(device) for c in batch[2:4]), 0.99)
            loss.backward()
        grads = torch.cat([p.grad.flatten().cpu() for p in model.parameters() if p.grad is not None])
        results.append((loss.item(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert abs(loss_a - loss_b) <= LAYOUT_LOSS_ATOL, (loss_a, loss_b)
    assert _rel_l2(grads_b, grads_a) <= LAYOUT_GRAD_RTOL


# ---------------------------------------------------------------------------------------------
# Label propagation on the device
# ---------------------------------------------------------------------------------------------

def _cheapest_case(cases: list[str]) -> str:
    """The case with the smallest context (the first of those): the CPU dry run's one case."""
    try:
        listed = json.loads((GOLDEN / "labelprop" / "cases.json").read_text())["cases"]
        context = {c["name"]: c["CXT_SIZE"] for c in listed}
    except (OSError, KeyError, TypeError, ValueError):
        return cases[0]  # unreadable: the case fails on load, as in test_golden_propagation.py
    return min(cases, key=lambda name: context.get(name, 0))


def _propagation_params() -> list:
    """Every golden case and both kernels on CUDA; the CPU dry run takes the case with the smallest
    context only (test_golden_propagation.py runs them all on the CPU)."""
    cases = _case_names()
    cpu_case = _cheapest_case(cases)
    params = []
    for impl in ("dense", "local"):
        params.append(pytest.param("cpu", cpu_case, impl, id=f"cpu-{cpu_case}-{impl}"))
        params += [pytest.param("cuda", name, impl, id=f"cuda-{name}-{impl}", marks=CUDA) for name in cases]
    return params


@pytest.mark.parametrize("where,name,impl", _propagation_params())
def test_propagation_on_device_gives_the_golden_labels(labelprop, where, name, impl):  # noqa: F811
    device = torch.device("cuda", 0) if where == "cuda" else torch.device("cpu")
    root, meta, inputs = labelprop
    case, hp = {c["name"]: c for c in meta["cases"]}[name], meta["hyper_parameters"]
    exp = np.load(root / f"case_{name}.npz")
    feats = torch.from_numpy(inputs["feats"]).float().to(device)
    merge = torch.from_numpy(inputs["feats_merge"]).float().to(device)
    emb = embed(feats, merge, hp["LAMBDA"]) if case["MERGE"] else embed(feats)
    prop = LabelPropagator(radius=float(hp["RADIUS"]), temperature=hp["TEMP"], topk=hp["KNN"],
                           context=case["CXT_SIZE"], num_classes=hp["NUM_CLASSES"], impl=impl)
    labels = inputs[case["labels"]]
    soft, pred = [], []
    with full_float32():
        for t in range(emb.shape[0]):
            s = prop.step(emb[t], torch.from_numpy(labels[t]).long().to(device))
            assert s.device.type == device.type, "the soft mask left the device"
            lab, _ = upsample_labels(s, labels.shape[1:])
            soft.append(s.cpu().numpy())
            pred.append(lab.cpu().numpy())
    soft = np.stack(soft)
    err = np.abs(soft - exp["soft_masks"]).max()
    assert err <= SOFT_ATOL, f"{name}/{impl} on {device}: soft masks differ by up to {err:.3g}"
    assert_labels_match(np.stack(pred), exp["pred_labels"], exp["soft_masks"], f"{name}/{impl} on {device}")


# ---------------------------------------------------------------------------------------------
# torchrun: train, stop, resume; DDP and synchronised BatchNorm in a group of one
# ---------------------------------------------------------------------------------------------

# Steps 1-2 in this process, then ``torchrun --nproc_per_node 1 train.py --resume auto`` to step 4,
# against one run of 4 steps (a torchrun job of one process differs from a plain run only by its
# environment variables: it makes no process group, hvc/distributed.py).
# On the CPU resume is bit-exact. On CUDA the config's AMP (fp16) is on and cuDNN's backward
# passes may sum with atomics in any order: a one-ulp change of an fp16 activation is 1e-3
# relative, so the losses agree to that (autotuning is off, so both processes take the same
# algorithms). A resume that restored the wrong state (RNG, crops, weights) moves them by 1e-1.
RESUME_LOSS_TOL = 1e-3


def _backend(device: torch.device) -> str:
    if device.type != "cuda":
        return "gloo"
    if not dist.is_nccl_available():
        cuda_unavailable(f"torch {torch.__version__} was built without NCCL")
    return "nccl"


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def test_torchrun_one_process_trains_and_resumes(static_root, tmp_path, device):
    backend = _backend(device)
    images = tiny_image_folder(static_root, tmp_path / "imgs")
    run = tmp_path / "torchrun"
    common = [f"runtime.device={device.type}", f"dist.backend={backend}", "runtime.cudnn_benchmark=false"]
    train_py = [str(REPO / "train.py"), "--config", str(REPO / "configs" / "train_img.yaml")]
    train(tiny_config(run, images, *common, "optim.max_steps=2"))
    _torchrun([*train_py, "--resume", "auto", *tiny_overrides(run, images, *common, "optim.max_steps=4")], tmp_path)
    whole = train(tiny_config(tmp_path / "whole", images, *common, "optim.max_steps=4"))

    log = read_log(run)
    starts = [r for r in log if r["event"] == "start"]
    assert [r["global_step"] for r in starts] == [0, 2]
    assert all(r["device"].startswith(device.type) and r["world_size"] == 1 for r in starts)
    resumed = [r["loss"] for r in log if r["event"] == "step"]
    assert [r["step"] for r in log if r["event"] == "step"] == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed, whole.losses, rtol=RESUME_LOSS_TOL, atol=RESUME_LOSS_TOL)
    assert load_checkpoint(run / "checkpoint.pth")["global_step"] == 4


def _group_of_one(port: int, backend: str, device: torch.device) -> dict:
    """In this process: a process group of one (destroyed at the end), the model converted for
    synchronised BatchNorm and wrapped in DDP as the engine does in a job, one train_step; beside it
    the plain model's step on the same batch. Returns both losses and gradients."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        cfg = tiny_config(Path("unused"), Path("unused"))
        g = torch.Generator().manual_seed(0)
        lo = torch.rand(4, 2, generator=g) * 0.4
        coords = torch.cat([lo, lo + 0.5], dim=1)
        # the same boxes in both views: every cell has positive pairs, so every sample has a gradient
        batch = (torch.randn(4, 3, 64, 64, generator=g), torch.randn(4, 3, 64, 64, generator=g), coords, coords)
        results = {}
        for kind in ("plain", "ddp"):
            torch.manual_seed(0)
            model = build_model(cfg.model)
            if kind == "ddp":
                model = convert_sync_batchnorm(model, device)
            model = model.to(device)
            net = wrap_ddp(model, device, sync_buffers=False) if kind == "ddp" else model
            optimizer = build_optimizer(model, cfg.optim)
            with full_float32():
                loss = train_step(net, batch, optimizer, make_scaler(device, None), 0.99, device=device)
            grads = torch.cat([s["exp_avg"].flatten().cpu() for s in optimizer.state_dict()["state"].values()])
            results[kind] = (loss, grads)
        value = torch.ones(1, device=device)
        dist.all_reduce(value)  # a collective of the backend itself on this device
        return {"results": results, "all_reduce": value.item(), "bn": type(model.online_encoder.bn1).__name__}
    finally:
        dist.destroy_process_group()


def test_process_group_of_one_matches_the_plain_model(tmp_path, device):
    """``torchrun --nproc_per_node 1`` makes no process group (hvc/distributed.py); a group of one
    with the backend of a GPU job (NCCL) runs its DDP and SyncBatchNorm code here instead."""
    backend = _backend(device)
    found = _group_of_one(_free_port(), backend, device)
    assert found["all_reduce"] == 1.0
    assert found["bn"] == ("SyncBatchNorm" if device.type == "cuda" else "CrossProcessBatchNorm")
    (plain_loss, plain_grads), (ddp_loss, ddp_grads) = found["results"]["plain"], found["results"]["ddp"]
    assert abs(ddp_loss - plain_loss) <= 1e-5 * max(1.0, abs(plain_loss))
    assert plain_grads.norm() > 0, "the plain step has no gradient: the check would be empty"
    assert _rel_l2(ddp_grads, plain_grads) <= 1e-4


# ---------------------------------------------------------------------------------------------
# A checkpoint written on CUDA, read on the CPU
# ---------------------------------------------------------------------------------------------

CROSS_DEVICE_FEATURE_ATOL = 1e-4  # float32 features of one frame, two devices' kernels


def test_checkpoint_from_device_loads_on_cpu_with_the_same_features(davis_root, static_root, tmp_path, device):
    images = tiny_image_folder(static_root, tmp_path / "imgs")
    run = tmp_path / "run"
    train(tiny_config(run, images, f"runtime.device={device.type}", "optim.max_steps=1"))
    ckpt = load_checkpoint(run / "checkpoint.pth")
    tensors = [v for v in ckpt["model"].values()] + [
        v for s in ckpt["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    assert all(t.device.type == "cpu" for t in tensors), "load_checkpoint left tensors on the GPU"

    state = encoder_from_checkpoint(ckpt, drop_layer4=True)  # the test-time trunk
    frame = _davis_frame(davis_root)
    feats = {}
    for where in ("cpu", device.type):
        net = ResNet(ARCH["hvc"], with_layer4=False)
        net.load_state_dict(state, strict=True)
        with full_float32():
            feats[where] = FeatureExtractor(net.eval(), device=torch.device(where))(frame).cpu()
    assert feats["cpu"].shape == (1, 256, 60, 107)
    assert (feats[device.type] - feats["cpu"]).abs().max().item() <= CROSS_DEVICE_FEATURE_ATOL

    # and training resumes on the CPU from the device's checkpoint (scaler and RNG states included)
    resumed = train(tiny_config(tmp_path / "cpu", images, "runtime.device=cpu", f"resume={run / 'checkpoint.pth'}",
                                "optim.max_steps=2"))
    assert resumed.global_step == 2 and len(resumed.losses) == 1 and np.isfinite(resumed.losses[0])
