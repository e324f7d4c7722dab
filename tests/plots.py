"""What the SRE's dashboards would show during a drill: a sampler that scrapes metrics
in the background, and a PNG of the series (matplotlib) under test-output/."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.helpers import metric

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"


class Sampler:
    """Every `every_s`, each series' value from `url()` (a metrics page), with the time."""

    def __init__(
        self,
        url: Callable[[], str],
        series: dict[str, tuple[str, dict[str, str]]],
        every_s: float = 1.0,
    ) -> None:
        self.url, self.series, self.every_s = url, series, every_s
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in series}
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def mark(self, label: str) -> None:
        self.marks.append((time.monotonic() - self._started, label))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                page = httpx.get(self.url(), timeout=2).text
            except httpx.HTTPError:
                page = ""
            now = time.monotonic() - self._started
            for name, (metric_name, labels) in self.series.items():
                value = metric(page, metric_name, **labels)
                if value is not None and value != float("inf"):
                    self.samples[name].append((now, value))
            self._stop.wait(self.every_s)

    def plot(self, path: Path, title: str) -> Path | None:
        """The series as a PNG; None (and nothing written) without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        figure, axes = plt.subplots(
            len(self.series), 1, figsize=(10, 2.4 * len(self.series)), sharex=True
        )
        for axis, (name, points) in zip(figure.axes, self.samples.items(), strict=False):
            axis.plot([t for t, _ in points], [v for _, v in points], drawstyle="steps-post")
            axis.set_ylabel(name, fontsize=8)
            for at, label in self.marks:
                axis.axvline(at, color="grey", linestyle="--", linewidth=0.8)
                axis.annotate(label, (at, axis.get_ylim()[1]), fontsize=7, rotation=90, va="top")
        figure.axes[-1].set_xlabel("seconds into the drill")
        figure.suptitle(title)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        del axes
        return path
