"""Label propagation: embeddings, the frame-by-frame propagator and mask up-sampling."""

from hvc.propagation.config import PropagationConfig
from hvc.propagation.embed import embed
from hvc.propagation.masks import upsample_labels
from hvc.propagation.propagator import LabelPropagator

__all__ = ["LabelPropagator", "PropagationConfig", "embed", "upsample_labels"]
