"""What every config section shares: the error a bad config raises, and strict models (unknown keys refused,
every number finite)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from distillkit.registry import DistillkitError

__all__ = ["ConfigError", "Strict"]


class ConfigError(DistillkitError):
    """The config file is missing, not YAML, or does not match the schema."""


class Strict(BaseModel):
    """A config section: unknown keys are refused with their path, and every number must be finite."""

    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)
