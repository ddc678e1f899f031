"""Alignment tests run torch on one thread: their models are small, and intra-op threads on a busy 2-core machine
cost more than they save."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from recforge.threads import single_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield
