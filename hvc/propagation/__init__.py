"""Label propagation: embeddings, the propagator, its context policies, the kernels, mask up-sampling."""

from hvc.config.propagation import PropagationConfig
from hvc.propagation.context import ContextPolicy, RecentFrames
from hvc.propagation.kernel import DenseKernel, Kernel, KeyMemory, context_frames
from hvc.propagation.local.kernel import LocalKernel
from hvc.propagation.masks import upsample_argmax, upsample_labels
from hvc.propagation.propagator import LabelPropagator, embed

__all__ = ["ContextPolicy", "DenseKernel", "Kernel", "KeyMemory", "LabelPropagator", "LocalKernel",
           "PropagationConfig", "RecentFrames", "context_frames", "embed", "upsample_argmax", "upsample_labels"]
