"""capture: train feed-forward networks with PyTorch and record their layers into a store.

Writes the actstats.store/1 format whose schema lives in :mod:`actstats.store`.
"""

from capture.config import CaptureConfig, ConfigError, load_config, parse_config
from capture.sweep import capture

__all__ = ["CaptureConfig", "ConfigError", "capture", "load_config", "parse_config"]
