"""Rich progress on stderr for conversion: tensors done, bytes written, rate."""

from __future__ import annotations


class NoProgress:
    def start(self, n_tensors: int, n_bytes: int) -> None: ...
    def tensor(self, i: int, name: str) -> None: ...
    def advance(self, n: int) -> None: ...
    def close(self) -> None: ...


class RichProgress(NoProgress):
    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.label = label
        self.p = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self.task = None
        self.n = 0

    def start(self, n_tensors: int, n_bytes: int) -> None:
        self.n = n_tensors
        self.p.start()
        self.task = self.p.add_task(self.label, total=n_bytes)

    def tensor(self, i: int, name: str) -> None:
        self.p.update(self.task, description=f"{self.label} tensor {i}/{self.n}")

    def advance(self, n: int) -> None:
        self.p.advance(self.task, n)

    def close(self) -> None:
        self.p.stop()


def make(enabled: bool, label: str) -> NoProgress:
    return RichProgress(label) if enabled else NoProgress()
