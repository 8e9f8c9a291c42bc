"""Per-round values, their summaries, and the targets of issues 3 and 10.

A workload runs on several *sides*: ``procwire`` and ``reference`` always
(the reference may be skipped), ``redis`` for procwire with ``REDIS_URL``
set, and whatever other configurations a workload compares (``workers1``...).
Each metric compares one side's value with another side's, or with another
value of the same side (``versus_key``).
"""

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


PROCWIRE, REFERENCE, REDIS = "procwire", "reference", "redis"


@dataclass(frozen=True)
class Metric:
    """One row of the table: which value of a round, and how to judge it."""

    key: str
    label: str
    unit: str
    better: str | None = None  # "higher", "lower" or None (a count, a check)
    target: Target | None = None
    fmt: Callable[[float], str] = fmt_number
    side: str = PROCWIRE  # whose value the row gives
    versus: str | None = REFERENCE  # the side it is compared with (None: no comparison)
    versus_key: str | None = None  # that side's value of another key (default: the same key)
    versus_label: str | None = None  # the reference column's text (default: that side's label)

    @property
    def compared_key(self) -> str:
        return self.versus_key or self.key


def within(tolerance: float, better: str | None) -> Target | None:
    """The Redis rows' target: the ratio with Redis within ``tolerance`` of the one without."""
    if better == "higher":
        return Target("ratio", ">=", 1 - tolerance, f"≥ {1 - tolerance:.2g}x of no Redis")
    if better == "lower":
        return Target("ratio", "<=", 1 + tolerance, f"≤ {1 + tolerance:.2g}x of no Redis")
    return None


@dataclass
class WorkloadResult:
    name: str
    description: str
    labels: dict[str, str]  # side -> what ran there, in the order the sides run
    metrics: list[Metric]
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # side -> one dict per round
    skipped: set[str] = field(default_factory=set)  # sides that did not run at all (no websocketd...)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # side -> py-spy summary
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)  # side -> bench/timeline.py phases
    redis_tolerance: float | None = None  # Redis rows: within this of the run without Redis
    seconds: float = 0.0

    @property
    def reference_label(self) -> str:
        return self.labels.get(REFERENCE, "")

    @property
    def procwire(self) -> list[dict[str, float]]:
        return self.runs.setdefault(PROCWIRE, [])

    @property
    def reference(self) -> list[dict[str, float]] | None:
        return None if REFERENCE in self.skipped else self.runs.setdefault(REFERENCE, [])

    def add(self, side: str, values: dict[str, float]) -> None:
        self.runs.setdefault(side, []).append(values)

    def values(self, side: str, key: str) -> list[float]:
        return [values[key] for values in self.runs.get(side, []) if key in values]

    def summary(self, side: str | None, key: str) -> Summary | None:
        if side is None or side in self.skipped:
            return None
        return Summary.of(self.values(side, key))

    def row(self, metric: Metric, side: str | None = None) -> dict[str, Any]:
        """``metric`` as the table shows it; ``side`` replaces the metric's own (the Redis rows)."""
        mine = self.summary(side or metric.side, metric.key)
        theirs = self.summary(metric.versus, metric.compared_key)
        ratio = None
        if mine is not None and theirs is not None and theirs.median:
            ratio = mine.median / theirs.median
        met = metric.target.met(mine.median if mine else None, ratio) if metric.target else None
        return {"metric": metric, "procwire": mine, "reference": theirs, "ratio": ratio, "met": met}

    def versus_label(self, metric: Metric) -> str:
        if metric.versus is None:
            return ""
        if metric.versus in self.skipped:
            return "skipped"
        return metric.versus_label or self.labels.get(metric.versus, metric.versus)

    def redis_rows(self) -> list[dict[str, Any]]:
        """Each procwire-vs-reference metric run with and without ``REDIS_URL``: both
        ratios, the change, and the target (within ``redis_tolerance``; a metric
        with a fixed target, such as 0 dropped connections, keeps it)."""
        if REDIS not in self.runs or self.redis_tolerance is None:
            return []
        rows = []
        for metric in self.metrics:
            if metric.side != PROCWIRE:
                continue
            plain, redis = self.row(metric), self.row(metric, REDIS)
            change = None
            if plain["procwire"] is not None and redis["procwire"] is not None and plain["procwire"].median:
                change = redis["procwire"].median / plain["procwire"].median
            target = within(self.redis_tolerance, metric.better) if metric.target else None
            if target is not None:
                met = target.met(None, change)
            elif metric.target is not None:
                met = redis["met"]
                target = metric.target
            else:
                met = None
            if metric.target is not None and redis["procwire"] is None and plain["procwire"] is not None:
                met = False  # it ran without Redis and not with it
            rows.append(
                {"metric": metric, "plain": plain, "redis": redis, "change": change, "target": target, "met": met}
            )
        return rows

    def redis_missed(self) -> bool:
        """A target missed with Redis by a figure measured with Redis (not by a row that failed there)."""
        return any(row["met"] is False and row["redis"]["procwire"] is not None for row in self.redis_rows())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "labels": self.labels,
            "runs": self.runs,
            "skipped": sorted(self.skipped),
            "notes": self.notes,
            "profiles": self.profiles,
            "timelines": self.timelines,
            "seconds": round(self.seconds, 1),
        }
