"""Print uv.lock's pins of everything except the runtime dependencies, as pip constraints.

`make test-lowest` installs the runtime dependencies at their floors (what users may have) while the test
tools stay at their locked versions (what the suite is written for): this script gives uv the second half.
Reads `uv export` output on stdin.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def main() -> None:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    runtime = {_name(req) for req in project["dependencies"]}
    for line in sys.stdin:
        if line.strip() and not line.lstrip().startswith("#") and _name(line.strip()) not in runtime:
            sys.stdout.write(line)


if __name__ == "__main__":
    main()
