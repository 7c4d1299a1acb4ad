"""Repeated measurements, their summary, and the PASS/MISS lines of the targets."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Stats:
    """Samples of one figure (one per repetition)."""

    name: str
    unit: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def line(self, width: int = 44) -> str:
        return (
            f"  {self.name:<{width}} median {fmt(self.median):>9} {self.unit:<9}"
            f" min {fmt(self.min):>9}  max {fmt(self.max):>9}  (n={len(self.samples)})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "samples": list(self.samples),
        }


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclasses.dataclass(frozen=True)
class Target:
    """One target of the issue: a figure, how it compares, the verdict."""

    benchmark: str
    text: str
    passed: bool
    figures: str


class Report:
    """Collects what the benchmarks print, their figures and the target verdicts."""

    def __init__(self) -> None:
        self.stats: dict[str, list[Stats]] = {}
        self.ratios: dict[str, dict[str, float]] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        self.targets: list[Target] = []
        self.errors: dict[str, str] = {}

    def section(self, benchmark: str, title: str) -> None:
        print(f"\n[{benchmark}] {title}", flush=True)

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def add(self, benchmark: str, stats: Stats) -> Stats:
        self.stats.setdefault(benchmark, []).append(stats)
        print(stats.line(), flush=True)
        return stats

    def ratio(
        self, benchmark: str, name: str, numerator: Stats, denominator: Stats, unit: str = "x"
    ) -> float:
        """The ratio of two medians, measured in this invocation."""
        value = numerator.median / denominator.median
        self.ratios.setdefault(benchmark, {})[name] = value
        print(f"  {name:<44} {value:.2f}{unit}  ({numerator.name} / {denominator.name})")
        return value

    def extra(self, benchmark: str, name: str, value: Any, text: str | None = None) -> None:
        self.extras.setdefault(benchmark, {})[name] = value
        if text is not None:
            print(f"  {text}", flush=True)

    def target(self, benchmark: str, text: str, passed: bool, figures: str) -> None:
        self.targets.append(Target(benchmark, text, passed, figures))
        verdict = "PASS" if passed else "MISS"
        print(f"  {verdict}  {text}: {figures}", flush=True)

    def failed(self, benchmark: str, error: str) -> None:
        self.errors[benchmark] = error
        print(f"  ERROR {error}", flush=True)

    def summary(self) -> str:
        lines = ["", "Targets", "-------"]
        for target in self.targets:
            verdict = "PASS" if target.passed else "MISS"
            lines.append(f"{verdict}  [{target.benchmark}] {target.text}: {target.figures}")
        for benchmark, error in self.errors.items():
            lines.append(f"ERROR [{benchmark}] {error}")
        passed = sum(target.passed for target in self.targets)
        lines.append(f"{passed}/{len(self.targets)} targets met")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "stats": {b: [s.as_json() for s in group] for b, group in self.stats.items()},
            "ratios": self.ratios,
            "extras": self.extras,
            "targets": [dataclasses.asdict(t) for t in self.targets],
            "errors": self.errors,
        }


def stats(name: str, unit: str, samples: Sequence[float]) -> Stats:
    return Stats(name, unit, tuple(samples))
