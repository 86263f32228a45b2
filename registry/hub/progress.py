"""Rich progress bars for downloads (on stderr, so --json output stays clean)."""

from __future__ import annotations

from collections.abc import Callable


class Bars:
    """`with Bars(enabled) as bars: on_write = bars.add(name, total, done)`."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None

    def __enter__(self) -> Bars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, name: str, total: int | None, done: int = 0) -> Callable[[int], None]:
        if self._progress is None:
            return lambda n: None
        task = self._progress.add_task(name, total=total, completed=done)
        progress = self._progress
        return lambda n: progress.update(task, advance=n)
