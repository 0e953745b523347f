"""Every code example in the docs is a file under docs/examples/, and each one runs here against a real Redis
(the quickstart with a worker process answering; the solver examples against the simulator in process)."""

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
    assert len(EXAMPLES) >= 8
    pages = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))
    included = set(re.findall(r'--8<-- "(examples/[\w./-]+\.py)"', pages))
    assert {f"examples/{e.name}" for e in EXAMPLES} <= included, "an example no page shows"


def test_every_python_block_in_the_docs_is_an_example_file() -> None:
    """A ```python fence holds one include and nothing else: code typed into a page is never run."""
    for page in [*DOCS.rglob("*.md"), DOCS.parent / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M):
            if page.name == "README.md":  # the front page shows the quickstart file verbatim (test below)
                continue
            assert re.fullmatch(r'--8<-- "examples/[\w-]+\.py"\n', block), f"{page.name}: {block[:80]!r}"


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


@pytest.mark.timeout(60)
def test_worker_side_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "worker_side.py", subprocess_env)
    assert out.splitlines() == [
        "renewed 2 lost [] cancelled []",
        "complete: success",
        "retry: None",
        "fenced: LeaseLost",
        "final: error ERROR_CAPTCHA_UNSOLVABLE attempt 2",
        "reaped: 0",
    ]


@pytest.mark.timeout(90)
def test_embedded_worker_example_keeps_the_account_limit(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "embed_worker.py", subprocess_env)
    assert "10 results: {'success'}" in out
    assert "most solves at once: 3 of 3" in out


@pytest.mark.timeout(60)
def test_solver_interface_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "solver_interface.py", subprocess_env)
    assert out.splitlines()[0] == "threads: 50"
    assert re.search(r"^token: \S+ \.\.\.$", out, flags=re.M)
    assert "poll_many: 2 outcomes" in out
    assert re.search(r"^instant: instant-\d+$", out, flags=re.M)


@pytest.mark.timeout(60)
def test_simulator_in_process_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "simulator_in_process.py", subprocess_env)
    assert out.splitlines() == [
        "accepted: 20 of 20 methods",
        "refused: ERROR_ZERO_BALANCE",
        "account: 20 submits",
    ]


@pytest.mark.timeout(60)
def test_embedded_metrics_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "metrics_embedded.py", subprocess_env)
    assert 'captcha_queue_tasks_finished_total{status="success"} 3.0' in out.splitlines()
    assert 'captcha_queue_tasks_finished_total{status="error"} 0.0' in out.splitlines()


@pytest.mark.timeout(60)
def test_webhook_receiver_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "webhook_receiver.py", subprocess_env)
    assert out == "received 03AGdBq24... (signature verified)\n"


def test_the_readme_shows_the_quickstart_file_verbatim() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```\n", readme, flags=re.S)
    assert (DOCS / "examples" / "quickstart.py").read_text(encoding="utf-8") in blocks


def test_the_readme_is_a_front_page_not_the_manual() -> None:
    assert len((DOCS.parent / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.timeout(60)
def test_refunds_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "refunds.py", subprocess_env)
    assert out.splitlines() == [
        "solved by: captchaai main remote id True",
        "reported: True",
        "again: False",
        "the service heard: {'bad': 1}",
    ]


@pytest.mark.timeout(60)
def test_accounts_registry_example(subprocess_env: dict[str, str]) -> None:
    out = _run(DOCS / "examples" / "accounts_registry.py", subprocess_env)
    lines = out.splitlines()
    assert lines[0].startswith("refused: limit - a 2captcha account reports no thread limit")
    assert lines[1:] == [
        "main captchaai threads env:CAPTCHAAI_KEY",
        "backup 2captcha 20 file:/run/secrets/solvers#twocaptcha",
        "left: ['main']",
    ]
