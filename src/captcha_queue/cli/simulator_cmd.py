"""``captcha-queue simulator``: serve the in.php / res.php simulator in the foreground.

The first line on stdout is the base URL (read it from scripts and tests); logs go to stderr.
SIGTERM and SIGINT stop it cleanly. ``/control`` and ``/stats/reset`` need the control token:
``CAPTCHA_QUEUE_SIMULATOR_TOKEN`` when set, else a random one printed on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import ssl
import sys

import click

from ..errors import ConfigError
from ..simulator import (
    DEFAULT_FAULT_KINDS,
    FAULT_KINDS,
    OVER_CAPACITY_MODES,
    SIM_PROFILES,
    FaultPlan,
    LatencyModel,
    SimulatorConfig,
    run_simulator,
)
from .app import FiniteFloat, cli

#: The control token for ``/control`` and ``/stats/reset`` (default: a random one, printed on stderr).
ENV_SIMULATOR_TOKEN = "CAPTCHA_QUEUE_SIMULATOR_TOKEN"


def _split(values: tuple[str, ...]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _latency(values: tuple[str, ...]) -> dict[str, LatencyModel]:
    models: dict[str, LatencyModel] = {}
    for value in values:
        variant, sep, spec = value.partition("=")
        if not sep:
            raise ConfigError(f"--latency needs VARIANT=MEDIAN[:MIN:MAX], got {value!r}")
        try:
            models[variant.strip()] = LatencyModel.parse(spec)
        except ValueError as exc:
            raise ConfigError(f"--latency {value!r}: {exc}") from exc
    return models


@cli.command("simulator")
@click.option(
    "--profile",
    type=click.Choice(list(SIM_PROFILES)),
    default="captchaai",
    show_default=True,
    help="The provider to simulate: endpoints (in.php and/or the JSON API), error semantics, "
    "threadsinfo or not, paying per solve (docs/providers.md).",
)
@click.option(
    "--price",
    type=FiniteFloat(),
    default=None,
    help="Charged per accepted task (profiles that pay per solve; default: the profile's).",
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False), default=None, help="Serve HTTPS: PEM certificate."
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), default=None, help="Serve HTTPS: PEM private key."
)
@click.option("--port", type=int, default=8765, show_default=True, help="Port to listen on (0: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--time-scale", type=FiniteFloat(), default=1.0, show_default=True, help="Multiplies every solve time."
)
@click.option("--threads", type=int, default=50, show_default=True, help="Thread limit per account.")
@click.option(
    "--over-capacity",
    type=click.Choice(OVER_CAPACITY_MODES),
    default="zero_balance",
    show_default=True,
    help="What a submit gets when every thread is busy.",
)
@click.option(
    "--keys", multiple=True, help="Accepted keys (comma-separated or repeated; default: any 32-char key)."
)
@click.option(
    "--fault-rate", type=FiniteFloat(), default=0.0, show_default=True, help="Share of requests that fail."
)
@click.option(
    "--fault-kinds",
    multiple=True,
    help=f"Kinds the fault rate is spread over (default: {','.join(DEFAULT_FAULT_KINDS)}; "
    f"all: {','.join(FAULT_KINDS)}).",
)
@click.option("--unsolvable-rate", type=FiniteFloat(), default=0.0, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for solve times, faults and answers.")
@click.option(
    "--latency", multiple=True, help="VARIANT=MEDIAN[:MIN:MAX] seconds, e.g. recaptcha_v2=35:15:80 or *=1."
)
@click.option(
    "--id-format", type=click.Choice(["mixed", "int", "string"]), default="mixed", show_default=True
)
@click.option("--balance", type=FiniteFloat(), default=10.0, show_default=True)
@click.option(
    "--ip-ban-after", type=int, default=5, show_default=True, help="Bad-key requests before IP_BANNED."
)
@click.option(
    "--min-poll-interval-s",
    type=FiniteFloat(),
    default=None,
    help="Answer ERROR_TOO_MUCH_REQUESTS to faster polls.",
)
@click.option("--multi-get/--no-multi-get", default=True, show_default=True, help="Serve res.php?ids=1,2,3.")
@click.option(
    "--pingback-mode",
    type=click.Choice(["get_query", "post_form", "off"]),
    default="get_query",
    show_default=True,
)
@click.option(
    "--slow-s", type=FiniteFloat(), default=2.0, show_default=True, help="Delay of a 'slow' fault (real s)."
)
@click.option(
    "--hang-s",
    type=FiniteFloat(),
    default=300.0,
    show_default=True,
    help="Length of a 'hang' fault (real s).",
)
def simulator_cmd(
    profile: str,
    price: float | None,
    tls_cert: str | None,
    tls_key: str | None,
    port: int,
    host: str,
    time_scale: float,
    threads: int,
    over_capacity: str,
    keys: tuple[str, ...],
    fault_rate: float,
    fault_kinds: tuple[str, ...],
    unsolvable_rate: float,
    seed: int | None,
    latency: tuple[str, ...],
    id_format: str,
    balance: float,
    ip_ban_after: int,
    min_poll_interval_s: float | None,
    multi_get: bool,
    pingback_mode: str,
    slow_s: float,
    hang_s: float,
) -> None:
    """Serve a simulator of a solver service (CaptchaAI's in.php/res.php by default, --profile for
    2captcha, CapSolver, Anti-Captcha) and print its base URL."""
    given_token = os.environ.get(ENV_SIMULATOR_TOKEN, "").strip()
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    ssl_context = _tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    try:
        kinds = _split(fault_kinds) or list(DEFAULT_FAULT_KINDS)
        config = SimulatorConfig(
            profile=profile,
            price=price,
            keys=tuple(_split(keys)) or None,
            threads=threads,
            over_capacity=over_capacity,  # type: ignore[arg-type]
            balance=balance,
            ip_ban_after=ip_ban_after,
            time_scale=time_scale,
            latency=_latency(latency),
            unsolvable_rate=unsolvable_rate,
            seed=seed,
            faults=FaultPlan.uniform(fault_rate, kinds),
            slow_real_s=slow_s,
            hang_real_s=hang_s,
            id_format=id_format,  # type: ignore[arg-type]
            multi_get=multi_get,
            min_poll_interval_s=min_poll_interval_s,
            pingback_mode=pingback_mode,  # type: ignore[arg-type]
            control_token=given_token or secrets.token_hex(16),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    key_length = SIM_PROFILES[config.profile].key_length if config.profile in SIM_PROFILES else 32
    if key_length is not None and any(len(key) != key_length for key in config.keys or ()):
        raise ConfigError(f"every --keys entry must be {key_length} characters")
    asyncio.run(_serve(config, host, port, token_given=bool(given_token), ssl_context=ssl_context))


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load --tls-cert/--tls-key: {exc}") from exc
    return context


async def _serve(
    config: SimulatorConfig,
    host: str,
    port: int,
    *,
    token_given: bool,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_simulator(config, host=host, port=port, ssl_context=ssl_context) as sim:
            click.echo(sim.base_url)
            sys.stdout.flush()
            click.echo(
                f"simulator ({config.profile}) on {sim.base_url} (time scale {config.time_scale}, "
                f"{config.threads} threads per "
                f"account, over capacity: {config.over_capacity}); stats at {sim.base_url}/stats",
                err=True,
            )
            token = f"${ENV_SIMULATOR_TOKEN}" if token_given else sim.control_token
            click.echo(f"/control and /stats/reset need the header: Authorization: Bearer {token}", err=True)
            await stop.wait()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
