"""Compare two git revisions on the per-task costs of ``bench.micro``, one after the other.

    python -m bench.compare REV_A REV_B [bench.micro options, e.g. --w1-tasks 4000]

Each revision is checked out with ``git worktree add`` in a temporary folder (removed afterwards) and
measured by *this* checkout's ``bench.micro`` with the revision's ``src/`` first on PYTHONPATH, so both
run the same measurement code. Command counts are exact; compare timings only on a quiet machine (or
run the comparison twice, A B then B A).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .harness import REPO_ROOT, child_env
from .micro import TARGETS

__all__ = ["main", "measure_revision"]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout


def measure_revision(rev: str, micro_args: list[str]) -> dict[str, Any]:
    """bench.micro's figures for the code of ``rev``."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        checkout = Path(tmp) / sha[:12]
        _git("worktree", "add", "--detach", str(checkout), sha)
        try:
            env = child_env({"PYTHONPATH": f"{checkout / 'src'}:{REPO_ROOT}"})
            argv = [sys.executable, "-m", "bench.micro", "--json", *micro_args]
            done = subprocess.run(argv, cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True)
        finally:
            _git("worktree", "remove", "--force", str(checkout))
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0].startswith("-") or args[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    rev_a, rev_b, micro_args = args[0], args[1], args[2:]
    a, b = measure_revision(rev_a, micro_args), measure_revision(rev_b, micro_args)
    print(f"{'figure':<28} {rev_a[:14]:>14} {rev_b[:14]:>14}   target")
    for name in sorted(set(a) | set(b)):
        if isinstance(a.get(name), dict) or isinstance(b.get(name), dict):
            continue
        target = TARGETS.get(name)
        goal = "" if target is None else f"{'>=' if target[1] else '<='} {target[0]:g}"
        print(f"{name:<28} {a.get(name)!s:>14} {b.get(name)!s:>14}   {goal}")
    for label, figures in ((rev_a, a), (rev_b, b)):
        for name, value in figures.items():
            if isinstance(value, dict):
                print(f"{label} {name}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
