"""Configuration machinery (:mod:`hvc.config.core`) and the schemas of the entry points."""

from hvc.config.core import ConfigError, dump_yaml, load_config, to_dict

__all__ = ["ConfigError", "dump_yaml", "load_config", "to_dict"]
