"""Shared by the tests of capture.Recorder: quick recording settings and the digits as tensors."""

from __future__ import annotations

import contextlib

import torch

from actstats.capture.data import load_digits


@contextlib.contextmanager
def quick_recording():
    """Chunks not synced to the disk (as for capture's tests that do not cut the power): the
    write order, which crash safety rests on, is the same. One torch thread (tiny networks:
    one thread is fastest, and unaffected by other load)."""
    import actstats.capture.recorder

    saved, actstats.capture.recorder.FSYNC = actstats.capture.recorder.FSYNC, False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        actstats.capture.recorder.FSYNC = saved


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits()
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)
