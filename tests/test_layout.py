"""The house's shape: what each public package exports, and no import cycles between modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

import captcha_queue

SRC = Path(captcha_queue.__file__).parent

#: Every public package and the names it exports. A change here is a change of the public API.
EXPORTS: dict[str, list[str]] = {
    "captcha_queue": [
        "AccountError",
        "AccountInfo",
        "AccountSpec",
        "AccountStats",
        "AsyncCaptchaQueue",
        "CaptchaQueue",
        "CaptchaQueueError",
        "Claim",
        "ConfigError",
        "DataLoss",
        "DeadLetter",
        "IdempotencyConflict",
        "InvalidArgument",
        "InvalidTask",
        "LeaseLost",
        "QueueFull",
        "RedisCommandError",
        "RedisOutOfMemory",
        "RedisUnavailable",
        "Result",
        "ScriptError",
        "ServerVersionError",
        "Solution",
        "SolverBusy",
        "SolverError",
        "Stats",
        "SubmitRefused",
        "Task",
        "TaskCancelled",
        "TaskNotFound",
        "TaskRejected",
        "TaskSpec",
        "TaskStatus",
        "TransientError",
        "Unsolvable",
        "__version__",
    ],
    "captcha_queue.queue": ["AsyncCaptchaQueue", "CaptchaQueue", "QueueConfig", "TaskStatus"],
    "captcha_queue.worker": [
        "AccountBreaker",
        "Action",
        "Backoff",
        "Decision",
        "LimiterConfig",
        "MultiWorker",
        "NullEvents",
        "PollConfig",
        "PollScheduler",
        "RetryPolicy",
        "SlotLimiter",
        "SlotState",
        "Worker",
        "WorkerConfig",
        "WorkerEvents",
        "WorkerInfo",
        "WorkerRegistry",
        "WorkerSettings",
        "read_slot_state",
        "run_worker",
    ],
    "captcha_queue.solvers": [
        "CODES",
        "DEFAULT_BASE_URL",
        "PROFILES",
        "PROVIDER_NAMES",
        "SOLVER_KINDS",
        "CaptchaAISolver",
        "CodeInfo",
        "InstantSolver",
        "JsonApiSolver",
        "PollItem",
        "PollOutcome",
        "ProviderProfile",
        "Solver",
        "create_solver",
        "error_for",
        "profile_for",
    ],
    "captcha_queue.simulator": [
        "DEFAULT_FAULT_KINDS",
        "DEFAULT_LATENCY",
        "FAULT_KINDS",
        "OVER_CAPACITY_MODES",
        "SIM_PROFILES",
        "FaultPlan",
        "LatencyModel",
        "OverCapacity",
        "RunningSimulator",
        "SimulatorConfig",
        "account_label",
        "make_app",
        "run_simulator",
    ],
    "captcha_queue.cli": ["cli", "main"],
    "captcha_queue.dashboard": [
        "CSP",
        "DEFAULT_PORT",
        "PAGE_CLIENT_NAME",
        "READER_NAME",
        "DashboardConfig",
        "make_app",
        "read_token_file",
        "serve",
    ],
    "captcha_queue.gateway": [
        "DEFAULT_PORT",
        "TASK_TYPES",
        "ClientKey",
        "GatewaySettings",
        "RunningGateway",
        "create_key",
        "insecure_binding",
        "list_keys",
        "make_app",
        "revoke_key",
        "run_gateway",
        "tls_context",
    ],
    "captcha_queue.webhooks": ["Delivery", "Outbox", "WebhookDeliverer", "WebhookSettings", "sign"],
}


def _public(module: ModuleType) -> list[str]:
    """The names a package shows that it defines: not private, not a submodule, from its own modules
    (``from typing import Any`` or a sibling's error used inside a package is not an export)."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, ModuleType):
            continue
        if getattr(value, "__module__", "").startswith(module.__name__):
            names.append(name)
    return sorted(names)


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_each_public_package_exports_exactly_its_pinned_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)  # its order is ruff's (RUF022)
    assert exported == EXPORTS[package]
    assert set(_public(module)) <= set(exported), f"{package} shows names outside __all__"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports anywhere in its body: lazy imports and imports under
    ``if TYPE_CHECKING`` included (a cycle hidden from the interpreter is still a cycle of design)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
                break
    return found


def test_no_module_imports_itself_back_through_a_cycle() -> None:
    files = {_module_name(path): path for path in SRC.rglob("*.py")}
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of design: leave those edges out.
    for name, deps in graph.items():
        graph[name] = {dep for dep in deps if not dep.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_producer_side_never_imports_the_worker_side() -> None:
    files = {_module_name(path): path for path in SRC.rglob("*.py")}
    for name, path in files.items():
        if name.startswith(("captcha_queue.queue", "captcha_queue.store", "captcha_queue.protocol")):
            deps = _imports(path, set(files))
            assert not {d for d in deps if d.startswith("captcha_queue.worker")}, name
