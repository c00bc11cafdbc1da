"""Schema of ``train.py``: every training default lives here, once, with its meaning (settings in use:
docs/training_runs.md). YAML files in ``configs/`` list only changes; any key can be overridden (``optim.lr=5e-4``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from hvc.config import checks

# Smallest crop side: two feature cells (stride 8) on each side.
MIN_CROP_SIZE = 16


@dataclass
class DataConfig:
    # static: one image = one sample, two crops of it; video: two crops of two frames of one video
    kind: Literal["static", "video"] = "static"
    # image folders, searched recursively (static) or of <video>/<frame>.jpg (video); relative to the working directory
    roots: list[str] = field(default_factory=list)
    size: int = 256  # crop side in pixels (square crops)
    scale: tuple[float, float] = (0.0, 1.0)  # RandomResizedCrop area range (the paper's)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop aspect-ratio range (the paper's)
    # training normalisation statistics (docs/training.md; test time uses ImageNet's)
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
    batch_size: int = 128  # global batch size (split evenly over the processes of a torchrun job)
    workers: int = 4  # DataLoader worker processes per training process (0 = load in the main process)
    max_gap: int = 10  # video only: the two frames of a sample are at most this many frames apart


@dataclass
class ModelConfig:
    arch: Literal["resnet18", "resnet50"] = "resnet18"  # encoder: resnet18 (paper) or resnet50
    proj_hidden_dim: int = 256  # projector hidden channels (paper: 256, as the two below)
    proj_dim: int = 256  # projector output channels
    pred_hidden_dim: int = 256  # predictor hidden channels
    pos_radius: float = 0.1  # positive pairs: cell-centre distance / larger cell diagonal strictly below this
    momentum: float = 0.99  # EMA momentum at step 0 (m0); cosine schedule to 1 over all training steps
    # train the encoder's layer4 (the paper); false: the projector reads layer3, the trunk the test-time encoder
    # keeps, for about a third of the encoder work per step (docs/training_runs.md)
    layer4: bool = True
    # side of the zero image the online encoder sees once in train mode when built (official quirk); null skips it
    init_forward_size: Optional[int] = 256


@dataclass
class OptimConfig:
    name: Literal["adam"] = "adam"  # optimiser (the paper uses Adam without a learning-rate schedule)
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 20  # passes over the data; the momentum schedule spans epochs * steps_per_epoch steps
    max_steps: Optional[int] = None  # stop after this many steps in total (short runs); the schedule is not rescaled


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda if available; under torchrun cuda:LOCAL_RANK
    amp: bool = True  # mixed precision (autocast) on CUDA; CPU runs train in float32 unless cpu_bf16 (below)
    amp_dtype: Literal["fp16", "bf16"] = "fp16"  # autocast dtype on CUDA: fp16 (official, with a GradScaler) or bf16
    channels_last: bool = True  # channels_last memory format for model and inputs (CUDA only)
    # CPU only, opt-in (the paper trains in float32): bf16 autocast (native on AMX CPUs), channels_last layout
    cpu_bf16: bool = False
    cpu_channels_last: bool = False
    cudnn_benchmark: bool = True  # torch.backends.cudnn.benchmark (CUDA only): fastest conv algorithms for fixed sizes
    # CPU: flush denormal floats to zero; real images make denormal activations that slow CPU steps 4-6x
    flush_denormal: bool = True
    seed: int = 42  # seeds model initialisation, data sampling and crops (identical on every process)


@dataclass
class DistConfig:
    sync_bn: bool = True  # BatchNorm statistics over the global batch (as the paper's one GPU); false: per process
    # process-group backend: auto = nccl on CUDA (gloo beside it for CPU tensors), gloo on CPU
    backend: Literal["auto", "nccl", "gloo"] = "auto"


@dataclass
class OutputConfig:
    dir: str = "runs/hvc"  # run folder: checkpoint.pth, config.yaml and log.jsonl
    save_every_steps: int = 1000  # also write checkpoint.pth every N steps (0 = only at epoch ends and at the end)
    log_every: int = 10  # one JSON line (and progress-bar update) every N steps
    overwrite: bool = False  # start afresh in an output.dir that holds a run (without it and without resume: refused)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # null = start fresh; "auto" = continue from <output.dir>/checkpoint.pth when it exists; a path = continue from
    # that checkpoint (ours or the paper's released training checkpoint)
    resume: Optional[str] = None

    def validate(self) -> "TrainConfig":
        """Range checks the types cannot express (``load_config`` calls this); the error names the key."""
        checks.minima(self, {"data.size": MIN_CROP_SIZE, "data.batch_size": 1, "data.workers": 0, "data.max_gap": 1,
                             "model.proj_hidden_dim": 1, "model.proj_dim": 1, "model.pred_hidden_dim": 1,
                             "optim.weight_decay": 0.0, "optim.epochs": 1, "runtime.seed": 0,
                             "output.save_every_steps": 0, "output.log_every": 1})
        d, m = self.data, self.model
        checks.crop(d.size, d.scale, d.ratio, d.mean, d.std, prefix="data.")
        checks.positive("model.pos_radius", m.pos_radius)
        checks.within("model.momentum", m.momentum, 0.0, 1.0)
        checks.at_least("model.init_forward_size", m.init_forward_size, MIN_CROP_SIZE, allow_none=True)
        checks.positive("optim.lr", self.optim.lr)
        checks.at_least("optim.max_steps", self.optim.max_steps, 1, allow_none=True)
        if not self.output.dir:
            raise checks.ConfigError("output.dir: must not be empty")
        return self


def validate(cfg: TrainConfig) -> TrainConfig:
    """:meth:`TrainConfig.validate` and at least one image folder (configs leave ``data.roots`` to the command line)."""
    cfg.validate()
    if not cfg.data.roots:
        raise checks.ConfigError("data.roots: empty; list at least one image folder")
    return cfg
