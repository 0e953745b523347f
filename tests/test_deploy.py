"""The deployment kit in deploy/: what can be checked without docker, Kubernetes or systemd.

Every YAML and JSON file parses; the compose stack has its services, healthchecks and no secret
written out; every metric the Grafana dashboard and the alert rules use is one the worker exports;
every worker command line in the kit parses with the real CLI; the KEDA trigger reads the queue
lists the code writes; the Dockerfile's RUN steps, run as a script, install a working package.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from captcha_queue.cli import cli
from captcha_queue.cli.dashboard_cmd import dashboard_cmd
from captcha_queue.cli.gateway_cmd import gateway_cmd
from captcha_queue.cli.worker_cmd import worker_cmd
from captcha_queue.dashboard import DashboardConfig
from captcha_queue.errors import ConfigError
from captcha_queue.gateway import GatewaySettings, insecure_binding
from captcha_queue.models import PRIORITIES
from captcha_queue.store.keys import Keys
from captcha_queue.worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
METRIC_RE = re.compile(r"\bcaptcha_queue_[a-z0-9_]+")
#: Values that would be a secret written out: a password in a URL, a requirepass with a value.
SECRET_RE = re.compile(r"redis://:[^$<@/\s]+@|requirepass\s+[^%\s'\"]|--requirepass\b|CAPTCHAAI_KEY=\S")


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load(path: Path) -> Any:
    docs = yaml_docs(path)
    assert len(docs) == 1, path
    return docs[0]


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed document (keys and values)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def exported_series() -> set[str]:
    """Every sample name a worker's /metrics can carry (counters' _total, histograms' _bucket...)."""
    names: set[str] = set()
    for family in WorkerMetrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def check_worker_argv(argv: list[str]) -> dict[str, Any]:
    """Parse ``captcha-queue [root options] worker [options]`` with the real commands; the worker's params."""
    at = argv.index("worker")
    with cli.make_context("captcha-queue", [*argv[:at], "worker"]):
        pass  # the root options parse
    with worker_cmd.make_context("worker", list(argv[at + 1 :])) as ctx:
        return dict(ctx.params)


# -- every file parses ----------------------------------------------------------------------------


def test_every_yaml_and_json_file_parses() -> None:
    found = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml", ".json"))
    assert len(found) >= 8, found
    for path in found:
        docs = [json.loads(path.read_text())] if path.suffix == ".json" else yaml_docs(path)
        assert docs, path
        assert all(isinstance(doc, dict) for doc in docs), path


def test_no_file_of_the_kit_writes_a_secret_out() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.parent.name != "secrets":
            text = path.read_text()
            assert not SECRET_RE.search(text), path  # placeholders are <password>
    assert SECRET_RE.search("redis://:hunter2@redis:6379/0")  # the pattern does catch one


# -- compose --------------------------------------------------------------------------------------


def test_compose_stack_structure() -> None:
    compose = load(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"redis", "worker", "gateway", "dashboard", "prometheus", "grafana"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"

    redis = services["redis"]
    assert re.fullmatch(r"redis:7(\.\d+)*", redis["image"]), redis["image"]
    command = " ".join(redis["command"])
    for needed in ("--appendonly yes", "--maxmemory-policy noeviction", "requirepass", "/run/secrets/"):
        assert needed in command, needed
    assert "redis-data:/data" in redis["volumes"]

    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / worker["build"]["context"]).resolve() == ROOT
    params = check_worker_argv(["--captchaai-key-file", "/run/secrets/captchaai_key", *worker["command"]])
    assert params["metrics_host"] == "0.0.0.0"
    metrics_port = params["metrics_port"]
    assert "/run/secrets/captchaai_key" in " ".join(worker["entrypoint"])
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"

    # Secrets are files, never values: the environment names none, and each declared file is one
    # of secrets/ (which git ignores).
    for name, service in services.items():
        for key in service.get("environment", {}):
            assert not re.search(r"PASSWORD|KEY|SECRET|TOKEN", key) or key.endswith("__FILE"), (name, key)
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/"), secret
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[-2:] == ["*", "!.gitignore"]
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port  # published to the host's loopback only

    check_dashboard_service(services["dashboard"], compose["secrets"])
    check_gateway_service(services["gateway"], compose["secrets"])

    prometheus = load(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"]
    assert sd["port"] == metrics_port
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]

    grafana_volumes = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana_volumes
    provider = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "captcha-queue.yaml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def check_dashboard_service(dashboard: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The compose dashboard: its command line parses with the real CLI into a configuration the
    dashboard accepts (a non-loopback bind with both tokens from secret files), published to the
    host's loopback only, its healthcheck on /readyz, the Redis password read from its file."""
    argv = list(dashboard["command"])
    assert argv[0] == "dashboard"
    with dashboard_cmd.make_context("dashboard", argv[1:]) as ctx:
        params = ctx.params
    assert params["host"] == "0.0.0.0"
    for role in ("operator", "viewer"):
        path = params[f"{role}_token_file"]
        assert str(path).startswith("/run/secrets/"), path
        assert path.name in dashboard["secrets"]
        assert secrets[path.name]["file"] == f"./secrets/{path.name}"
    config = DashboardConfig(
        host=params["host"],
        port=params["port"],
        operator_token="o" * 32,
        viewer_token="v" * 32,
        insecure_http=params["insecure_http"],
    )
    config.check()  # it would start
    with pytest.raises(ConfigError):
        config.replace(operator_token=None, viewer_token=None).check()  # and not without its tokens
    assert dashboard["ports"] == [f"127.0.0.1:{params['port']}:{params['port']}"]
    assert "/readyz" in " ".join(dashboard["healthcheck"]["test"])
    assert f":{params['port']}/" in " ".join(dashboard["healthcheck"]["test"])
    assert "/run/secrets/redis_password" in " ".join(dashboard["entrypoint"])
    assert dashboard["depends_on"]["redis"]["condition"] == "service_healthy"


def check_gateway_service(gateway: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The compose gateway: its command line parses with the real CLI into settings the gateway
    accepts, bound beyond loopback WITH TLS (clients send keys: no insecure-binding warning), the
    certificate, key, Redis password and webhook secret from secret files, never on the command line."""
    argv = list(gateway["command"])
    assert argv[0] == "gateway"
    with gateway_cmd.make_context("gateway", argv[1:]) as ctx:
        params = dict(ctx.params)
    assert params["host"] == "0.0.0.0"
    for name in ("tls_cert", "tls_key"):
        path = Path(params[name])
        assert str(path).startswith("/run/secrets/"), path
        assert path.name in gateway["secrets"]
        assert secrets[path.name]["file"] == f"./secrets/{path.name}"
    settings = GatewaySettings(
        host=params["host"], port=params["port"], tls_cert=params["tls_cert"], tls_key=params["tls_key"]
    )
    assert insecure_binding(settings) is None
    assert insecure_binding(dataclasses.replace(settings, tls_cert=None, tls_key=None)) is not None
    assert gateway["ports"] == [f"127.0.0.1:{params['port']}:{params['port']}"]
    test = " ".join(gateway["healthcheck"]["test"])
    assert f"https://127.0.0.1:{params['port']}/readyz" in test
    entry = " ".join(gateway["entrypoint"])
    assert "/run/secrets/redis_password" in entry
    assert "/run/secrets/webhook_secret" in entry
    assert not any("secret" in arg.lower() and "=/run/secrets/" not in arg for arg in argv)
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"


# -- metrics used by the dashboard and the alerts ------------------------------------------------


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    exported = exported_series()
    assert "captcha_queue_tasks_finished_total" in exported
    assert "captcha_queue_queue_wait_seconds_bucket" in exported

    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "captcha-queue.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert used <= exported, used - exported
    # The panels the kit promises: throughput, queued per priority, in flight, slots used vs limit,
    # solver errors, account paused.
    for needed in (
        "captcha_queue_tasks_finished_total",
        "captcha_queue_queued",
        "captcha_queue_in_flight",
        "captcha_queue_solver_slots_used",
        "captcha_queue_solver_slots_limit",
        "captcha_queue_solver_requests_total",
        "captcha_queue_account_paused",
    ):
        assert needed in used, needed
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])

    alerts = load(DEPLOY / "prometheus" / "alerts.yml")
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
        found = set(METRIC_RE.findall(rule["expr"]))
        assert found, rule["alert"]
        assert found <= exported, found - exported
    names = {rule["alert"] for rule in rules}
    for needed in (
        "CaptchaQueueNoWorkersWhileTasksWait",
        "CaptchaQueueSolverLimitSaturated",
        "CaptchaQueueDeadLettersGrowing",
        "CaptchaQueueAccountPaused",
        "CaptchaQueueHighErrorRate",
    ):
        assert needed in names, needed
    saturated = next(r for r in rules if r["alert"] == "CaptchaQueueSolverLimitSaturated")
    assert saturated["for"] == "10m"


def test_the_metric_check_catches_a_name_the_worker_does_not_export() -> None:
    assert not {"captcha_queue_tasks_finished", "captcha_queue_queue_depth"} & exported_series()


# -- systemd --------------------------------------------------------------------------------------


def test_systemd_unit_keeps_the_key_off_the_command_line() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "captcha-queue-worker.service")
    service = unit["Service"]
    assert service["EnvironmentFile"] == "/etc/captcha-queue/worker.env"
    assert service["LoadCredential"] == "captchaai-key:/etc/captcha-queue/captchaai.key"
    assert service["User"] != "root"
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/captcha-queue")
    params = check_worker_argv(argv[1:])
    assert params["metrics_port"] == 9464
    assert argv[argv.index("--captchaai-key-file") + 1] == "${CREDENTIALS_DIRECTORY}/captchaai-key"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    env_example = (DEPLOY / "systemd" / "worker.env.example").read_text()
    assert "0600" in env_example
    assert "CAPTCHAAI_KEY" not in env_example


# -- Kubernetes -----------------------------------------------------------------------------------


def test_kubernetes_worker_probes_secrets_and_keda_lists() -> None:
    (deployment,) = yaml_docs(DEPLOY / "kubernetes" / "worker.yaml")
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    params = check_worker_argv(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == params["metrics_port"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "captcha-queue"
    assert "value" not in env["REDIS_URL"]
    assert "CAPTCHAAI_KEY" not in env
    key_file = str(container["args"][0]).split("=", 1)[1]
    assert params["metrics_host"] == "0.0.0.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert key_file.startswith(mounts["key"] + "/")
    key_volume = next(v for v in pod["volumes"] if v["name"] == "key")
    assert key_volume["secret"]["secretName"] == "captcha-queue"
    assert key_volume["secret"]["defaultMode"] == 0o400
    assert pod["terminationGracePeriodSeconds"] > 30  # --grace-s

    docs = {d["kind"]: d for d in yaml_docs(DEPLOY / "kubernetes" / "keda-scaledobject.yaml")}
    scaled = docs["ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] >= 1
    keys = Keys(env["CAPTCHA_QUEUE_NAMESPACE"]["value"])
    lists = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]]
    assert lists == [keys.queue(p) for p in PRIORITIES]
    auth = docs["TriggerAuthentication"]
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "redis"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert "password" not in trigger["metadata"]
    assert auth["spec"]["secretTargetRef"][0]["name"] == "captcha-queue"


# -- the Dockerfile -------------------------------------------------------------------------------


def dockerfile_steps(path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(ARG defaults, RUN commands in order, the final stage's other instructions)."""
    lines = path.read_text().splitlines()
    joined: list[str] = []
    current = ""
    for line in lines:
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    args: dict[str, str] = {}
    runs: list[str] = []
    final: list[str] = []
    for instruction in joined:
        word, _, rest = instruction.partition(" ")
        word = word.upper()
        if word == "FROM":
            final = []
        final.append(instruction)
        if word == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif word == "RUN":
            runs.append(rest)
    return args, runs, final


def find_uv() -> str | None:
    candidates = [os.environ.get("UV"), str(ROOT / ".tools" / "bin" / "uv"), shutil.which("uv")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def test_dockerfile_runs_as_a_non_root_user_from_python_3_11_slim() -> None:
    _, _, final = dockerfile_steps(DEPLOY / "Dockerfile")
    assert final[0] == "FROM python:3.11-slim"
    user = next(i for i in final if i.startswith("USER "))
    assert not user.split()[1].startswith(("0", "root")), user
    entry = next(i for i in final if i.startswith("ENTRYPOINT "))
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == ["captcha-queue"]
    cmd = json.loads(next(i for i in final if i.startswith("CMD ")).removeprefix("CMD "))
    assert check_worker_argv(cmd)["metrics_port"] == 9464


@pytest.mark.timeout(600)
def test_dockerfile_run_steps_install_a_working_package(tmp_path: Path) -> None:
    uv = find_uv()
    if uv is None:
        pytest.skip("uv not found (make bootstraps it into .tools/; or set UV)")
    args, runs, _ = dockerfile_steps(DEPLOY / "Dockerfile")
    assert len(runs) == 2, runs  # the build stage's, the final stage's
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").symlink_to(uv)
    (bin_dir / "python3").symlink_to(sys.executable)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTHON"))}
    env = {
        **clean,
        **args,
        "DIST": str(tmp_path / "dist"),
        "VENV": str(tmp_path / "venv"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    script = "set -eu\n" + "\n".join(runs) + "\n"
    done = subprocess.run(
        ["sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=540, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "dist").exists()  # the final RUN removes what it installed from
    version = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "captcha-queue"), "--version"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("captcha-queue, version "), version.stdout
    probe = "import captcha_queue, pathlib; print(pathlib.Path(captcha_queue.__file__).parent)"
    where = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert "site-packages" in where  # the wheel's copy, not the source tree
    assert list(Path(where).glob("store/lua/**/*.lua"))


def test_click_rejects_an_unknown_worker_flag() -> None:
    """check_worker_argv is a real check: a flag the worker does not have fails it."""
    with pytest.raises(click.UsageError):
        check_worker_argv(["worker", "--no-such-flag"])
