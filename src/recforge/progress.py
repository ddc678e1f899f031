"""Progress bars for long work (rich), switched off in tests and when stderr is not a terminal unless forced."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled(flag: bool | None = None) -> bool:
    """Show bars when asked, or by default when stderr is a TTY and RECFORGE_NO_PROGRESS is unset."""
    if flag is not None:
        return flag
    return sys.stderr.isatty() and not os.environ.get("RECFORGE_NO_PROGRESS")


def track(items: Iterable[T], description: str, total: int | None = None, show: bool | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar when :func:`enabled`."""
    if not enabled(show):
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        yield from bar.track(items, total=total, description=description)
