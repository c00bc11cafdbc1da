"""Schema of ``test.py``: label propagation on DAVIS / YouTube-VOS (docs/propagation.md) and on JHMDB, VIP and
VOST (docs/tasks.md). Defaults follow the paper's protocol; its official quirks are opt-in (docs/official_quirks.md)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Optional

from hvc.config import checks
from hvc.config.propagation import PropagationConfig

# data.input_size: at least two feature cells (stride 8) on the shorter side; at most 4096 (a 16:9 frame of 4096x7281
# px, ~6 GB of features per stored context frame: a larger run cannot fit, so it is refused before any allocation).
MIN_INPUT_SIZE = 16
MAX_INPUT_SIZE = 4096

ModelName = Literal["hvc", "mocov1", "imagenet18", "imagenet50", "random18"]


@dataclass
class ModelConfig:
    name: ModelName = "hvc"  # Feature extractor: hvc (ResNet-18), mocov1 (ResNet-50), imagenet18/50, random18.
    checkpoint: Optional[str] = None  # Weights file; None = the model's default file (docs/checkpoints.md).
    seed: int = 0  # random18 only: seed of the paper's random initialisation.
    # Official quirk: one train-mode forward of a 256x256 zero image before eval (docs/propagation.md).
    bn_dummy_forward: bool = False
    # Second extractor whose features are merged: cat(lambda * norm(f), norm(f2)), re-normalised.
    merge_model: Optional[ModelName] = None
    merge_checkpoint: Optional[str] = None  # Weights of the merge model; None = its default file under checkpoints/.
    merge_lambda: float = 1.05  # Weight of the main features in the merge (the paper's 1.05).


@dataclass
class DataConfig:
    # Benchmark: davis16 / davis17 (val), davis17dev (2017 test-dev), ytvos (2018 valid), ytvos19;
    # jhmdb (pose, keypoint files), vip (parts, class-id PNGs), vost (val, indexed PNGs).
    dataset: Literal["davis16", "davis17", "davis17dev", "ytvos", "ytvos19", "jhmdb", "vip", "vost"] = "davis17"
    root: str = "data/DAVIS"  # The DAVIS folder, data/YTB/<year> for YouTube-VOS, or the JHMDB / VIP / VOST folder.
    # Sequences (JHMDB: <class>/<video>, VIP: videos) to run; empty = all. Naming a missing sequence is an error.
    sequences: list[str] = field(default_factory=list)
    # JHMDB / VIP only: the video list (JHMDB: <class>/<video> lines or a folder of official split files; VIP: the
    # paper's val_vip.txt); None = the scorer's default (docs/tasks.md).
    video_list: Optional[str] = None
    # Frame size fed to the encoder: the shorter side or, with resize=square, both sides; -1 = full size.
    input_size: int = -1
    # "shorter" (aspect kept, bilinear, align_corners=True: the official HVC loader) or "square" (aspect not kept,
    # bilinear with half-pixel centres like cv2.resize: videowalk's JHMDB and VIP loaders).
    resize: Literal["shorter", "square"] = "shorter"
    # Test normalisation: ImageNet statistics (docs/propagation.md), RGB in [0, 1].
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # DataLoader worker processes reading frames (0 = in the main process). None = automatic: 0 where this process
    # may use at most 2 CPUs (docs/speed.md), otherwise 2 (hvc.inference.loader_workers).
    workers: Optional[int] = None
    batch_size: int = 4  # Frames per encoder forward.


@dataclass
class RunConfig:
    results_root: str = "results"  # Root of the default output folders.
    output_dir: Optional[str] = None  # Output folder; None = <results_root>/<model>[+<merge_model>]/<dataset>.
    device: str = "cpu"  # Torch device: cpu, cuda, cuda:1 ... (under torchrun each process takes cuda:LOCAL_RANK)
    amp: Literal["off", "fp16", "bf16"] = "off"  # Autocast precision of the encoder on CUDA (ignored on CPU).
    channels_last: bool = False  # channels_last memory format for the encoder (faster convolutions on recent GPUs).
    # How the encoder runs (hvc/models/fast_encoder.py, docs/speed.md): "exact" (the float32 network the golden tests
    # check), "fused" (BatchNorm folded, channels_last, float32) or "bf16" (fused in bfloat16: opt-in, labels change).
    encoder: Literal["exact", "fused", "bf16"] = "exact"
    # Remove the folder's earlier results (any settings) and redo every sequence (default: keep the sequences whose
    # completion record names these settings, refuse other settings' results).
    overwrite: bool = False
    visualize: bool = False  # Also write overlay images and an mp4 per sequence into <output_dir>_vis/.
    fps: int = 24  # Frame rate of the overlay videos.


@dataclass
class TestConfig:
    __test__ = False  # not a pytest test class

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prop: PropagationConfig = field(default_factory=PropagationConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> "TestConfig":
        """Range checks the types cannot express (``load_config`` calls this); the error names the key."""
        checks.minima(self, {"model.seed": 0, "data.batch_size": 1, "run.fps": 1})
        d = self.data
        checks.positive("model.merge_lambda", self.model.merge_lambda)
        repeated = sorted(name for name, n in Counter(d.sequences).items() if n > 1)
        if repeated:
            raise checks.ConfigError(f"data.sequences: listed more than once: {repeated}")
        if d.input_size != -1:
            checks.at_least("data.input_size (-1 = full size)", d.input_size, MIN_INPUT_SIZE)
            checks.within("data.input_size (-1 = full size)", d.input_size, MIN_INPUT_SIZE, MAX_INPUT_SIZE)
        checks.mean_std(d.mean, d.std, prefix="data.")
        checks.at_least("data.workers", d.workers, 0, allow_none=True)
        self.prop.validate()  # the propagation settings' one check (hvc/config/propagation.py)
        if self.run.output_dir == "":
            raise checks.ConfigError("run.output_dir: must not be empty (null = the default folder)")
        checks.check_device_name("run.device", self.run.device)
        return self
