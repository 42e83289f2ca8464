"""The result table, for the terminal and for docs/benchmarks.md."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .common import Row


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def amount(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    digits = {"": 0, "MiB": 0, "s": 2, "/s": 2}.get(unit, 1)
    return f"{value:.{digits}f} {unit}".strip()


def verdict(item: Row) -> str:
    if item.met is None:
        return ""
    return "met" if item.met else "**missed**"


def spread(item: Row) -> str:
    if item.low is None or item.high is None:
        return "—"
    return f"{fmt(item.low, 3)}–{fmt(item.high, 3)}"


def table_lines(rows: Iterable[Row]) -> list[str]:
    """A markdown table of ``rows``."""
    lines = ["| figure | ours | baseline | ratio (median) | spread (min–max) | n | target | | note |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for item in rows:
        lines.append(
            f"| {item.name} | {amount(item.ours, item.unit)} | {amount(item.base, item.unit)} "
            f"| {fmt(item.ratio, 3)} | {spread(item)} | {item.reps} | {item.target} | {verdict(item)} | {item.note} |"
        )
    return lines


def terminal(rows: list[Row]) -> str:
    out = []
    for section in dict.fromkeys(item.section for item in rows):
        out.append(f"\n== {section}")
        out.append(f"  {'figure':<72} {'ours':>12} {'baseline':>12} {'ratio':>7} {'spread':<13} {'target':<7}")
        for item in rows:
            if item.section != section:
                continue
            out.append(f"  {item.name[:72]:<72} {amount(item.ours, item.unit):>12} {amount(item.base, item.unit):>12} "
                       f"{fmt(item.ratio, 3):>7} {spread(item):<13} {item.target:<7} {verdict(item).strip('*')}")
    return "\n".join(out)
