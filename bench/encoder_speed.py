"""Test-time encoder on the CPU: the speed of each execution option and its feature difference.

    python bench/encoder_speed.py                              # 480p DAVIS frames, batch 4
    python bench/encoder_speed.py --compile --runtimes         # also torch.compile, ONNX Runtime, OpenVINO

Every option runs the same eval-mode encoder (``--model``/``--checkpoint``, BatchNorm dummy
pass as in configs/test_davis16.yaml) on the same batch of real frames, prepared by the
test pipeline's ``FrameDataset``. Options run in alternation, round by round; the table gives
the median seconds per frame, the speed-up over the exact float32 eager forward, and the
difference of the features from it (max abs, relative L2 = ||f - f_exact|| / ||f_exact||).

Options: ``exact`` (float32 eager, the golden path), ``channels_last`` (eager, NHWC),
``folded`` (BatchNorm folded into the convolutions, NCHW), ``fused`` (folded + channels_last:
``run.encoder=fused``), ``jit_freeze`` (TorchScript trace + freeze + optimize_for_inference,
oneDNN fusion), ``bf16_autocast`` (eager NHWC under CPU autocast), ``bf16`` (folded NHWC with
bfloat16 weights: ``run.encoder=bf16``); with ``--compile``: ``compile`` (torch.compile of
the NHWC network with Inductor's freezing, compile time reported as setup); with
``--runtimes``: ONNX Runtime (float32) and OpenVINO (f32, bf16) when their packages import
(they are not requirements of this repository).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _timing import alternate, load_line, median  # noqa: E402

from hvc.cli import keep_freed_memory  # noqa: E402
from hvc.config.inference import DataConfig  # noqa: E402
from hvc.data.vos import FrameDataset, load_sequences  # noqa: E402
from hvc.models.encoders import load_encoder  # noqa: E402
from hvc.models.fast_encoder import fold_batchnorm, wrap_encoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def real_batch(root: str, sequence: str, batch: int, input_size: int) -> torch.Tensor:
    """The first ``batch`` frames of a DAVIS 2016 sequence as the test pipeline feeds them."""
    seq = load_sequences("davis16", root, [sequence])[0]
    data = DataConfig()
    frames = FrameDataset(seq, input_size, data.mean, data.std)
    return torch.stack([frames[t] for t in range(batch)])


def onnx_runtime_option(net: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor] | str:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime not installed"
    import onnxruntime as ort
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    arr = x.numpy()
    return lambda: torch.from_numpy(session.run(["y"], {"x": arr})[0])


def openvino_option(net: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], torch.Tensor] | str:
    if importlib.util.find_spec("openvino") is None:
        return "openvino not installed"
    import openvino as ov
    core = ov.Core()
    model = ov.convert_model(copy.deepcopy(net), example_input=x)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                 "INFERENCE_NUM_THREADS": str(torch.get_num_threads())})
    request = compiled.create_infer_request()
    arr = x.numpy()

    def run() -> torch.Tensor:
        request.infer({0: arr})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis-root", default=str(REPO.parent / "shared" / "data" / "DAVIS"))
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--batch", type=int, default=4, help="frames per forward (test configs: 4)")
    parser.add_argument("--input-size", type=int, default=-1, help="shorter side; -1 = full 480p")
    parser.add_argument("--model", default="hvc")
    parser.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "hvc_bsds_cpu.pth"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="+", help="run only these options (exact is always run)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (compiles for minutes)")
    parser.add_argument("--runtimes", action="store_true", help="also ONNX Runtime / OpenVINO if installed")
    args = parser.parse_args(argv)

    x = real_batch(args.davis_root, args.sequence, args.batch, args.input_size)
    net = load_encoder(args.model, args.checkpoint, bn_dummy_forward_pass=True)
    print(f"encoder {args.model} on {args.batch} frames {tuple(x.shape[2:])} of {args.sequence}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {load_line()}")

    cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    folded = fold_batchnorm(net)
    fused = wrap_encoder(net, "fused")
    bf16 = wrap_encoder(net, "bf16")

    def autocast_bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return cl_net(x_cl).float()

    options: dict[str, Callable[[], torch.Tensor]] = {
        "exact": lambda: net(x),
        "channels_last": lambda: cl_net(x_cl),
        "folded": lambda: folded(x),
        "fused": lambda: fused(x),
        "bf16_autocast": autocast_bf16,
        "bf16": lambda: bf16(x),
    }
    setup_s: dict[str, float] = {}
    skipped: dict[str, str] = {}
    if not args.only or "jit_freeze" in args.only:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript is deprecated; measured for the record
            start = time.perf_counter()
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(net), x)))
            frozen(x)
            setup_s["jit_freeze"] = time.perf_counter() - start
        options["jit_freeze"] = lambda: frozen(x)
    if args.compile:
        import torch._inductor.config as inductor_config
        # freezing: weights become constants, so Inductor folds BatchNorm and prepacks oneDNN weights
        with inductor_config.patch(freezing=True), torch.no_grad():
            compiled = torch.compile(copy.deepcopy(net).to(memory_format=torch.channels_last))
            start = time.perf_counter()
            compiled(x_cl)
            setup_s["compile"] = time.perf_counter() - start
        options["compile"] = lambda: compiled(x_cl)
    if args.runtimes:
        for name, make in [("onnxruntime", lambda: onnx_runtime_option(folded, x)),
                           ("openvino_f32", lambda: openvino_option(net, x, "f32")),
                           ("openvino_bf16", lambda: openvino_option(net, x, "bf16"))]:
            try:
                start = time.perf_counter()
                option = make()
                if isinstance(option, str):
                    skipped[name] = option
                    continue
                option()
                setup_s[name] = time.perf_counter() - start
                options[name] = option
            except Exception as exc:  # noqa: BLE001 - report any failure of an optional runtime
                skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    if args.only:
        options = {k: v for k, v in options.items() if k == "exact" or k in args.only}

    with torch.no_grad():
        ref = net(x)
        diffs = {}
        for name, fn in options.items():
            d = fn().float() - ref
            diffs[name] = (d.abs().max().item(), (d.norm() / ref.norm()).item())
        times = alternate(options, args.rounds)

    base = median(times["exact"])
    print(f"{'option':<15} {'s/frame':>8} {'speed-up':>8} {'max abs diff':>13} {'rel L2 diff':>12} {'setup s':>8}")
    for name in options:
        t = median(times[name])
        setup = f"{setup_s[name]:8.1f}" if name in setup_s else f"{'':>8}"
        print(f"{name:<15} {t / args.batch:8.3f} {base / t:7.2f}x {diffs[name][0]:13.2e} {diffs[name][1]:12.2e} {setup}")
    for name, why in skipped.items():
        print(f"{name:<15} not measured: {why}")
    print(f"after: {load_line()}")
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # as test.py does (hvc.cli.run_main)
    sys.exit(main())
