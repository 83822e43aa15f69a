"""capture: train feed-forward networks with PyTorch and record their layers into a store, or
record a user's own model from the user's own training loop (:class:`Recorder`).

Writes the actstats.store/2 format whose schema lives in :mod:`actstats.store`.
"""

from actstats.capture.attach import Recorder
from actstats.capture.config import CaptureConfig, ConfigError, load_config, parse_config
from actstats.capture.sweep import capture

__all__ = ["CaptureConfig", "ConfigError", "Recorder", "capture", "load_config", "parse_config"]
