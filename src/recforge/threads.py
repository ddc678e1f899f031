"""Thread control for small torch workloads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous count.

    For small ops (bandit slates, CRS batches) intra-op threads cost more in synchronisation than they save: measured
    5-6x slower with the default thread count on a busy 2-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
