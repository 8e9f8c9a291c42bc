"""Per-round values, their summaries, and the targets of issue 3."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    count: int

    @staticmethod
    def of(values: Sequence[float]) -> Summary | None:
        if not values:
            return None
        return Summary(statistics.median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class Target:
    """A goal from issue 3: on the ratio procwire/reference, or on procwire's own figure."""

    on: str  # "ratio" or "value"
    op: str  # ">=", "<=" or "=="
    bound: float
    text: str

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None or math.isnan(subject):
            return None
        if self.op == ">=":
            return subject >= self.bound
        if self.op == "<=":
            return subject <= self.bound
        return subject == self.bound


def at_least_ratio(bound: float) -> Target:
    return Target("ratio", ">=", bound, f"≥ {bound:g}x")


def at_most_ratio(bound: float) -> Target:
    return Target("ratio", "<=", bound, f"≤ {bound:g}x")


def at_most(bound: float, unit: str) -> Target:
    return Target("value", "<=", bound, f"≤ {bound:g} {unit}")


def exactly(bound: float, text: str) -> Target:
    return Target("value", "==", bound, text)


def fmt_number(value: float) -> str:
    """Three significant digits, without scientific notation for everyday sizes."""
    if value is None or math.isnan(value):
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Metric:
    """One row of the table: which value of a round, and how to judge it."""

    key: str
    label: str
    unit: str
    better: str | None = None  # "higher", "lower" or None (a count, a check)
    target: Target | None = None
    fmt: Callable[[float], str] = fmt_number


@dataclass
class WorkloadResult:
    name: str
    description: str
    procwire_label: str
    reference_label: str
    metrics: list[Metric]
    procwire: list[dict[str, float]] = field(default_factory=list)
    reference: list[dict[str, float]] | None = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    timeline: dict[str, Any] | None = None  # bench/timeline.py: phases of one operation
    seconds: float = 0.0

    def values(self, side: str, key: str) -> list[float]:
        rounds = self.procwire if side == "procwire" else self.reference or []
        return [values[key] for values in rounds if key in values]

    def row(self, metric: Metric) -> dict[str, Any]:
        mine = Summary.of(self.values("procwire", metric.key))
        theirs = Summary.of(self.values("reference", metric.key)) if self.reference is not None else None
        ratio = None
        if mine is not None and theirs is not None and theirs.median:
            ratio = mine.median / theirs.median
        met = metric.target.met(mine.median if mine else None, ratio) if metric.target else None
        return {"metric": metric, "procwire": mine, "reference": theirs, "ratio": ratio, "met": met}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "procwire": self.procwire,
            "reference": self.reference,
            "reference_label": self.reference_label,
            "notes": self.notes,
            "profile": self.profile,
            "timeline": self.timeline,
            "seconds": round(self.seconds, 1),
        }
