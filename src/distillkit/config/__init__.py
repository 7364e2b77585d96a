"""Configs: the pydantic schema of the YAML file, overrides and the resolved dump."""

from distillkit.config.loading import apply_overrides, dump_config, load_config
from distillkit.config.schema import Config, ConfigError

__all__ = ["Config", "ConfigError", "apply_overrides", "dump_config", "load_config"]
