"""``python -m bench.scaling`` at a tiny size: six runs, each with the cost per task Redis reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import scaling

from .cluster_fixtures import needs_cluster_tools

pytestmark = needs_cluster_tools


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_scaling_runs_every_deployment_and_namespace_count(tmp_path: Path) -> None:
    assert scaling.main(["--seconds", "1", "--loops", "1", "--out", str(tmp_path)]) == 0
    (report,) = tmp_path.glob("scaling-*.md")
    text = report.read_text()
    assert "python -m bench.scaling --seconds 1 --loops 1" in text
    rows = [
        line for line in text.splitlines() if line.startswith("| one Redis") or line.startswith("| Cluster")
    ]
    assert len(rows) == 6
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2].replace(",", "")) > 0  # tasks/s
        assert (
            0.9 < float(cells[3]) < 1.5
        )  # script calls per task: one finish, a fiftieth of submit and claim
        assert float(cells[5]) > 0  # Redis CPU per task
