"""Every code example in the docs is a file under docs/examples/, and each one runs here against a real Redis
(the quickstart with a real worker process answering)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ProcessManager

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))


def _run(example: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_there_are_examples_and_the_docs_include_every_one() -> None:
    assert len(EXAMPLES) >= 3
    pages = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))
    included = set(re.findall(r'--8<-- "(examples/[\w./-]+\.py)"', pages))
    assert {f"examples/{e.name}" for e in EXAMPLES} <= included, "an example no page shows"


@pytest.mark.timeout(60)
def test_async_producer_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "producer_async.py", subprocess_env)
    assert out.startswith("success 03AGdBq24... ")
    assert "{'user': 42}" in out


@pytest.mark.timeout(60)
def test_sync_producer_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "producer_sync.py", subprocess_env)
    assert out.count(" success solved") == 4
    assert "completed=4" in out


@pytest.mark.timeout(90)
def test_quickstart_is_answered_by_a_worker(
    subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    worker = processes.spawn_python(
        ["-m", "captcha_queue", "worker", "--processes", "1", "--solver", "instant"], subprocess_env
    )
    out = _run(DOCS / "examples" / "quickstart.py", subprocess_env)
    assert out.startswith("success ")
    assert worker.poll() is None


def test_the_readme_shows_the_quickstart_file_verbatim() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```\n", readme, flags=re.S)
    assert (DOCS / "examples" / "quickstart.py").read_text(encoding="utf-8") in blocks


def test_the_readme_is_a_front_page_not_the_manual() -> None:
    assert len((DOCS.parent / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
