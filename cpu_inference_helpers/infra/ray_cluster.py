"""A Ray cluster to run on: connect to one at an address, or start a local one sized to this machine.

Everything that can go wrong before the work starts is checked here, with a message that says what
to do: Ray not installed, an address nobody answers at, fewer CPUs than the workers ask for, and
workers whose software differs from this process's (they would build other models than it would).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cpu_inference_helpers.infra.cpus import usable_cpu_count
from cpu_inference_helpers.infra.versions import installed_version

logger = logging.getLogger(__name__)

#: What a worker must share with this process to build the same model in the same mode.
STACK_DISTRIBUTIONS = ("cpu-inference-tutorial", "torch", "transformers", "intel-extension-for-pytorch", "torchao")
INSTALL_HINT = "pip install 'cpu-inference-tutorial[ray]' (or: make, which installs every extra)"
#: The local cluster's object store: bounded, so that it never takes a notebook machine's memory.
DEFAULT_OBJECT_STORE_MB = 256
CONNECT_TIMEOUT_S = 5.0
#: Ray Data re-reads its logging configuration for every dataset it runs (so `logging.getLogger("ray.data")
#: .setLevel(...)` does not stick); this environment variable is the level it then applies.
RAY_DATA_LOG_LEVEL_ENV_VAR = "RAY_DATA_LOG_LEVEL"


class ClusterError(RuntimeError):
    """The cluster cannot run the work: the message says why and what to change."""


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster this process is connected to."""

    address: str | None  # None: a local cluster on this machine
    cpus: int
    nodes: int
    started_here: bool  # this process started (or connected) it and shuts it down (disconnects) at the end


def require_ray() -> Any:
    """Import Ray, or fail with the command that installs it."""
    try:
        import ray
    except ImportError as error:
        raise ClusterError(f"Ray is not installed ({error}): {INSTALL_HINT}") from error
    return ray


def stack_facts() -> dict[str, str | None]:
    """The versions (None: not installed) of what decides how a mode builds: compared between driver and workers."""
    return {name: installed_version(name) for name in STACK_DISTRIBUTIONS}


def require_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with the fix, when nothing listens at a Ray address (host:port or ray://host:port)."""
    if address == "auto":
        return  # Ray looks the address up itself and says so when there is none
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray_address {address!r} is not host:port or ray://host:port (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({error}). Start one on the head node with `ray start --head "
            f"--port={port}` and on every other node `ray start --address={target}`, or leave the address out "
            "to start a local cluster on this machine"
        ) from error


@contextlib.contextmanager
def ray_cluster(address: str | None = None, object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
                data_log_level: str | None = "ERROR") -> Iterator[ClusterInfo]:
    """Connect to the cluster at `address`, or start a local one with this machine's CPUs; yield its size.

    A cluster this process is already connected to is reused (and left running); one started here is shut
    down on exit. While inside, Ray Data logs to the console at `data_log_level` only (default ERROR: not
    every dataset's start, plan and end); its log files under the session folder keep everything. A level
    the user set in `RAY_DATA_LOG_LEVEL` wins; None leaves Ray Data's own INFO console logging on.
    """
    ray = require_ray()
    if ray.is_initialized() and address and address != "auto":
        connected = ray.get_runtime_context().gcs_address
        if address.removeprefix("ray://") != connected:
            raise ClusterError(f"this process is connected to the Ray cluster at {connected} already, not {address}: "
                               "call ray.shutdown() first, or leave the address out to use that one")
    with contextlib.ExitStack() as stack:
        if data_log_level is not None:
            stack.enter_context(_environment_default(RAY_DATA_LOG_LEVEL_ENV_VAR, data_log_level))
        started_here = not ray.is_initialized()
        if started_here:
            if address:
                require_reachable(address)
            _init(ray, address, object_store_mb)
            stack.callback(ray.shutdown)
        resources = ray.cluster_resources()
        info = ClusterInfo(address, int(resources.get("CPU", 0)), len([n for n in ray.nodes() if n.get("Alive")]),
                           started_here)
        logger.info("Ray cluster: %d CPUs on %d node(s)%s", info.cpus, info.nodes,
                    f" at {address}" if address else " (local)")
        yield info


@contextlib.contextmanager
def _environment_default(name: str, value: str) -> Iterator[None]:
    """Set environment variable `name` to `value` unless it is set already; restore it on exit."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _init(ray: Any, address: str | None, object_store_mb: int) -> None:
    # Ray's own logger at ERROR: not "Started a local Ray instance", nor that token authentication is on by default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(num_cpus=usable_cpu_count(), object_store_memory=object_store_mb * 2**20,
                         include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as error:
            raise ClusterError(f"could not connect to the Ray cluster at {address}: {error}") from error
    ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows its own


def require_capacity(info: ClusterInfo, workers: int, threads_per_worker: int) -> None:
    """Fail when the cluster has fewer CPUs than the workers ask for (Ray would wait for them forever)."""
    wanted = workers * threads_per_worker
    if wanted > info.cpus:
        raise ClusterError(
            f"{workers} workers x {threads_per_worker} threads need {wanted} CPUs; the cluster has {info.cpus}. "
            "Ask for fewer workers or threads, or add nodes (`ray start --address=...` on another machine)"
        )
