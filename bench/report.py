"""One line per figure a benchmark proves: the figure, its reference from the same run, the ratio, the target,
PASS or MISS. Every bench module reports through `figure()`; `make bench` then prints them all together with
`python -m bench.report` (the lines collected in $FX_BENCH_REPORT, one JSON object each).

A target is on the figure itself (`at_most=5, unit "ms"`) or on the ratio figure / reference
(`ratio_at_most=1.0`: no more CPU than nginx). A line without a target is printed for context, as INFO.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ENV = "FX_BENCH_REPORT"


@dataclass(frozen=True)
class Line:
    name: str
    figure: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    at_most: float | None = None
    at_least: float | None = None
    ratio_at_most: float | None = None
    ratio_at_least: float | None = None

    @property
    def ratio(self) -> float | None:
        return self.figure / self.reference if self.reference else None

    @property
    def target(self) -> str:
        parts = [f"≤ {self.at_most:g} {self.unit}" if self.at_most is not None else ""]
        parts.append(f"≥ {self.at_least:g} {self.unit}" if self.at_least is not None else "")
        parts.append(f"ratio ≤ {self.ratio_at_most:g}" if self.ratio_at_most is not None else "")
        parts.append(f"ratio ≥ {self.ratio_at_least:g}" if self.ratio_at_least is not None else "")
        return ", ".join(p for p in parts if p) or "-"

    @property
    def verdict(self) -> str:
        checks = []
        if self.at_most is not None:
            checks.append(self.figure <= self.at_most)
        if self.at_least is not None:
            checks.append(self.figure >= self.at_least)
        ratio = self.ratio
        if self.ratio_at_most is not None:
            checks.append(ratio is not None and ratio <= self.ratio_at_most)
        if self.ratio_at_least is not None:
            checks.append(ratio is not None and ratio >= self.ratio_at_least)
        if not checks:
            return "INFO"
        return "PASS" if all(checks) else "MISS"

    def text(self) -> str:
        reference = f"{_num(self.reference)} {self.unit} {self.reference_name}" if self.reference is not None else "-"
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else "-"
        return (
            f"{self.verdict:<4}  {self.name:<52} {_num(self.figure):>9} {self.unit:<6}"
            f" ref {reference:<44} ratio {ratio:>6}  target {self.target}"
        )


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def figure(name: str, value: float, unit: str, **kwargs: object) -> Line:
    """Print one line now and keep it for the summary (when $FX_BENCH_REPORT names a file)."""
    line = Line(name, value, unit, **kwargs)  # type: ignore[arg-type]
    print(line.text(), flush=True)
    if path := os.environ.get(ENV):
        with open(path, "a") as f:
            f.write(json.dumps(asdict(line)) + "\n")
    return line


def machine() -> str:
    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    """Print every line the run collected, then how many met their target."""
    path = Path(os.environ.get(ENV, ""))
    if not path.is_file():
        print(f"no figures collected: set {ENV} to a file before running the benchmarks", file=sys.stderr)
        return 2
    lines = [Line(**json.loads(raw)) for raw in path.read_text().splitlines() if raw.strip()]
    print(f"\n== fx benchmarks on {machine()}")
    for line in lines:
        print(line.text())
    verdicts = [line.verdict for line in lines]
    print(f"== {verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS, {verdicts.count('INFO')} for context")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
