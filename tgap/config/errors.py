"""The one error of config loading and checking: ``ConfigError``."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names which."""
