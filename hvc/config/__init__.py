"""Configuration machinery (:mod:`hvc.config.core`) and the schemas of the entry points."""

from hvc.config.core import ConfigError, apply_overrides, dump_yaml, load_config, to_dict

__all__ = ["ConfigError", "apply_overrides", "dump_yaml", "load_config", "to_dict"]
