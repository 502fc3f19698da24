"""Which cores each of N pinned instances gets: the machine's topology, as PyTorch's launcher reads it.

    core_lists(instances=2, threads=4)  # -> [[0, 1, 2, 3], [4, 5, 6, 7]] on one 8-core node

`python -m torch.backends.xeon.run_cpu` reads the topology from `lscpu --parse=CPU,Core,Socket,Node`:
which logical CPUs are SMT siblings of one physical core, and which NUMA node each is on. The same
output is read here (not through the launcher's `_CPUinfo`, which configures the root logger when
imported, fails on the empty Node column of machines without NUMA information and truncates node ids
of 10 and up). As the launcher does, an instance takes one logical CPU per physical core before any
sibling (two threads on one core share its execution units) and stays on one NUMA node when it fits
(its memory stays local). Only the CPUs this process may use (its affinity mask) are handed out.
Where the topology cannot be read (no `lscpu`), the usable CPUs are split in order, with a log line.
"""

from __future__ import annotations

import logging
import os
import subprocess

logger = logging.getLogger(__name__)


def _usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def _parse_lscpu(text: str) -> list[tuple[int, int, int]]:
    """(cpu, core, node) per line of `lscpu --parse=CPU,Core,Socket,Node`; an empty Node column means node 0."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cpu, core, _socket, node = (line.split(",") + ["", "", ""])[:4]
        rows.append((int(cpu), int(core), int(node) if node.strip() else 0))
    if not rows:
        raise ValueError("lscpu listed no CPU")
    return rows


def preferred_cpu_order(lscpu_text: str | None = None, usable: list[int] | None = None
                        ) -> list[tuple[list[int], list[int]]]:
    """The usable logical CPUs per NUMA node, as (one CPU per physical core, the SMT siblings). `lscpu_text`
    (the output of `lscpu --parse=CPU,Core,Socket,Node`) is read from the machine when None; `usable`
    defaults to this process's affinity mask."""
    usable_set = set(_usable_cpus() if usable is None else usable)
    try:
        text = lscpu_text if lscpu_text is not None else subprocess.run(
            ["lscpu", "--parse=CPU,Core,Socket,Node"], capture_output=True, text=True, check=True, timeout=30).stdout
        rows = _parse_lscpu(text)
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        logger.info("CPU topology unavailable (%s): instances get the usable CPUs in order", error)
        return [(sorted(usable_set), [])]
    order = []
    for node in sorted({node for _, _, node in rows}):
        first_of_core, siblings, seen = [], [], set()
        for cpu, core, cpu_node in sorted(rows):
            if cpu_node != node or cpu not in usable_set:
                continue
            (siblings if core in seen else first_of_core).append(cpu)
            seen.add(core)
        if first_of_core:
            order.append((first_of_core, siblings))
    return order or [(sorted(usable_set), [])]


def core_lists(instances: int, threads: int, lscpu_text: str | None = None,
               usable: list[int] | None = None) -> list[list[int]]:
    """`instances` disjoint lists of `threads` logical CPUs each: on a node where the instance gets a physical
    core per thread if there is one, else on a node where it fits with SMT siblings, else across nodes.

    Raises ValueError when the usable CPUs are fewer than `instances * threads`.
    """
    nodes = preferred_cpu_order(lscpu_text, usable)
    available = sum(len(primary) + len(siblings) for primary, siblings in nodes)
    if instances * threads > available:
        raise ValueError(f"{instances} instances x {threads} threads need {instances * threads} CPUs; "
                         f"this process may use {available}")

    def take(cpus: list[int], count: int) -> list[int]:
        taken = cpus[:count]
        del cpus[:count]
        return taken

    lists: list[list[int]] = []
    for _ in range(instances):
        whole_cores = next((node for node in nodes if len(node[0]) >= threads), None)
        with_siblings = next((node for node in nodes if len(node[0]) + len(node[1]) >= threads), None)
        if whole_cores is not None:
            lists.append(take(whole_cores[0], threads))
        elif with_siblings is not None:
            primary = take(with_siblings[0], threads)
            lists.append(primary + take(with_siblings[1], threads - len(primary)))
        else:  # no node has room for it: the fullest nodes' CPUs, physical cores first
            picked: list[int] = []
            for primary, siblings in sorted(nodes, key=lambda node: len(node[0]) + len(node[1]), reverse=True):
                picked += take(primary, threads - len(picked))
                picked += take(siblings, threads - len(picked))
            lists.append(picked)
    return lists
