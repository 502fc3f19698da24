"""Pinning as PyTorch's launcher sees the machine: physical cores before SMT siblings, one NUMA node per instance."""

import pytest

from cpu_inference_helpers.infra.core_lists import core_lists, preferred_cpu_order

# two nodes of two physical cores, each core with an SMT sibling (CPU n and n+4 share a core)
TWO_NODES_SMT = """# CPU,Core,Socket,Node
0,0,0,0
1,1,0,0
2,2,1,1
3,3,1,1
4,0,0,0
5,1,0,0
6,2,1,1
7,3,1,1
"""


def test_physical_cores_come_before_their_siblings_per_node():
    assert preferred_cpu_order(TWO_NODES_SMT, usable=list(range(8))) == [([0, 1], [4, 5]), ([2, 3], [6, 7])]


def test_an_instance_stays_on_one_node_and_avoids_sharing_a_core():
    assert core_lists(2, 2, TWO_NODES_SMT, usable=list(range(8))) == [[0, 1], [2, 3]]
    assert core_lists(4, 1, TWO_NODES_SMT, usable=list(range(8))) == [[0], [1], [2], [3]]
    assert core_lists(1, 4, TWO_NODES_SMT, usable=list(range(8))) == [[0, 1, 4, 5]]


def test_only_the_usable_cpus_are_handed_out_and_too_many_are_refused():
    assert core_lists(2, 1, TWO_NODES_SMT, usable=[2, 6, 7]) == [[2], [7]]
    with pytest.raises(ValueError, match="need 4 CPUs; this process may use 3"):
        core_lists(2, 2, TWO_NODES_SMT, usable=[2, 6, 7])


def test_an_instance_too_big_for_one_node_spans_two():
    assert sorted(core_lists(1, 6, TWO_NODES_SMT, usable=list(range(8)))[0]) == [0, 1, 2, 3, 4, 5]


def test_machines_without_numa_information_and_with_many_nodes_are_read_right():
    # CPUs 0 and 2 share core 0 and CPUs 1 and 3 share core 1; the Node column is empty (common in VMs)
    no_numa = "# CPU,Core,Socket,Node\n0,0,0,\n1,1,0,\n2,0,0,\n3,1,0,\n"
    assert core_lists(2, 1, no_numa, usable=[0, 1, 2, 3]) == [[0], [1]]
    assert core_lists(1, 2, no_numa, usable=[0, 1, 2, 3]) == [[0, 1]]  # two cores, not two siblings
    twelve_nodes = "".join(f"{node},{node},0,{node}\n" for node in range(12))
    assert preferred_cpu_order(twelve_nodes, usable=list(range(12)))[11] == ([11], [])


def test_this_machines_lists_are_disjoint_usable_cpus():
    import os

    usable = sorted(os.sched_getaffinity(0))
    lists = core_lists(len(usable), 1)
    assert sorted(cpu for cores in lists for cpu in cores) == usable


def test_reading_the_topology_leaves_the_callers_logging_alone():
    """torch's launcher module calls logging.basicConfig(level=INFO) when imported; a library must not."""
    from cpu_inference_helpers.infra.fresh_process import run_in_fresh_process

    handlers, level = run_in_fresh_process(_root_logger_after_reading_the_topology)  # a process never imported it
    assert handlers == 0 and level == "WARNING"


def _root_logger_after_reading_the_topology():
    import logging

    preferred_cpu_order()
    root = logging.getLogger()
    return len(root.handlers), logging.getLevelName(root.level)
