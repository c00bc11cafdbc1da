"""The propagation schema lives in :mod:`hvc.config.propagation`; this name keeps imports written
before the move working (new code imports from ``hvc.config.propagation``)."""

from hvc.config.propagation import LATER_FIELDS, PropagationConfig, QualityConfig, recorded_settings

__all__ = ["LATER_FIELDS", "PropagationConfig", "QualityConfig", "recorded_settings"]
