"""Old against new, alternated in one run: the only comparison this kind of shared machine allows.

    python bench/compare.py --old 1f1599e -- --endpoints 1 --messages 40000 --batch 500
    python bench/compare.py --old HEAD~3 --rounds 2 -- --mix 1000 --messages 20000

Checks ``--old`` out into a temporary git worktree and runs ``bench/throughput.py`` (this
checkout's copy, so both sides are measured alike) with the given arguments, alternating old
and new ``--rounds`` times (old first in odd rounds, new first in even ones), each side
importing Postback from its own tree. An old tree that has compiled hot modules
(``postback/native_build.py``, session 19 on) is compiled first, as ``make bench`` compiles this
one, so compiled code compares with compiled code; ``--old-source`` runs it from source. Prints each pair side by side (rate, CPU per delivery of
all Postback's processes and of their event loops, p99 latency from the 202) and the new/old
ratio of each pair and their median. The machine's speed drifts by tens of percent between
minutes, so only pairs taken minutes apart compare; report them all. The worktree is removed
at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RATE = re.compile(r"^\[(?P<phase>[^\]]+)\] \d+ deliveries .* = (?P<rate>[\d,]+) deliveries/s")
CPU = re.compile(
    r"^\[(?P<phase>[^\]]+)\] Postback CPU .* = (?P<all>[\d,]+) µs per delivery .*"
    r"event loops (?P<loop>[\d,]+) µs(?:.*PostgreSQL (?P<db>[\d,]+) µs)?"
)
P99 = re.compile(r"^\[(?P<phase>[^\]]+)\] latency from 202: .* p99 (?P<p99>[\d,]+) ms, max")


@dataclass
class Figures:
    rate: float | None = None
    cpu_us: float | None = None
    loop_us: float | None = None
    p99_ms: float | None = None
    db_us: float | None = None
    """PostgreSQL's own CPU per delivery, when it runs on this machine."""


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse(output: str) -> dict[str, Figures]:
    """Per phase (baseline, each case), the figures ``throughput.py`` printed."""
    phases: dict[str, Figures] = {}
    for line in output.splitlines():
        if m := RATE.match(line):
            phases.setdefault(m["phase"], Figures()).rate = _number(m["rate"])
        elif m := CPU.match(line):
            figures = phases.setdefault(m["phase"], Figures())
            figures.cpu_us, figures.loop_us = _number(m["all"]), _number(m["loop"])
            if m["db"]:
                figures.db_us = _number(m["db"])
        elif m := P99.match(line):
            phases.setdefault(m["phase"], Figures()).p99_ms = _number(m["p99"])
    return phases


def run(tree: Path, args: list[str]) -> dict[str, Figures]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(HERE / "throughput.py"), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"throughput.py failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return parse(done.stdout)


def _cell(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.0f}{unit}"


def _db_cells(old: Figures, new: Figures) -> str:
    if old.db_us is None and new.db_us is None:
        return ""
    return f"PostgreSQL µs {_cell(old.db_us)} -> {_cell(new.db_us)}; "


def _ratio(new: float | None, old: float | None) -> float | None:
    return None if new is None or not old else new / old


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3, help="old/new pairs (default 3)")
    parser.add_argument(
        "--old-source",
        action="store_true",
        help="run the old tree from source even where it could be compiled",
    )
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then throughput.py's")
    args = parser.parse_args()
    bench_args = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    old_rev = subprocess.run(
        ["git", "rev-parse", "--short", args.old], cwd=ROOT, capture_output=True, text=True
    )
    if old_rev.returncode != 0:
        sys.exit(f"not a commit: {args.old}")
    with tempfile.TemporaryDirectory(prefix="postback-compare-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-f", str(old_tree), args.old],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            if not args.old_source and (old_tree / "postback" / "native_build.py").exists():
                build = subprocess.run(
                    [sys.executable, "-m", "postback.native_build"],
                    cwd=old_tree,
                    env={**os.environ, "PYTHONPATH": str(old_tree)},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                print(f"old tree: {(build.stdout + build.stderr).strip()}", flush=True)
            pairs = []
            for round_ in range(1, args.rounds + 1):
                # ABBA: old first in odd rounds, new first in even ones, so that the
                # machine's drift over a run does not always favour the same side.
                if round_ % 2:
                    old = run(old_tree, bench_args)
                    new = run(ROOT, bench_args)
                else:
                    new = run(ROOT, bench_args)
                    old = run(old_tree, bench_args)
                pairs.append((old, new))
                for phase in old:
                    o, n = old[phase], new.get(phase, Figures())
                    print(
                        f"pair {round_} [{phase}] deliveries/s {_cell(o.rate)} -> {_cell(n.rate)}; "
                        f"µs per delivery {_cell(o.cpu_us)} -> {_cell(n.cpu_us)}, "
                        f"event loops {_cell(o.loop_us)} -> {_cell(n.loop_us)}; "
                        f"{_db_cells(o, n)}"
                        f"p99 {_cell(o.p99_ms, ' ms')} -> {_cell(n.p99_ms, ' ms')}",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old_tree)],
                cwd=ROOT,
                capture_output=True,
            )
    print(f"new (working tree) / old ({old_rev.stdout.strip()}), per pair, then the median:")
    for phase in pairs[0][0]:
        for name, field in (
            ("rate", "rate"),
            ("event-loop µs", "loop_us"),
            ("µs", "cpu_us"),
            ("PostgreSQL µs", "db_us"),
        ):
            ratios = [
                _ratio(getattr(new.get(phase, Figures()), field), getattr(old[phase], field))
                for old, new in pairs
                if phase in old
            ]
            known = [r for r in ratios if r is not None]
            if known:
                listed = " / ".join("-" if r is None else f"{r:.2f}" for r in ratios)
                print(f"  [{phase}] {name}: {listed} (median {statistics.median(known):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
