"""The profiler's C++ start and stop lines stay off stderr; Python's own stderr still works."""

import re
import subprocess
import sys

import torch

from cpu_inference_helpers.infra.log_levels import quiet_profile

#: Kineto's C++ log lines: "ERROR:2026-11-26 10:19:36 ... DeviceProperties.cpp:47] ...", "USDT:... profiler_start".
CPP_LOG_LINE = re.compile(r"^[A-Z]+:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ \w+\.cpp:\d+\]", re.MULTILINE)

PROFILE_ONCE = """
import sys, torch
from cpu_inference_helpers.techniques.compiling import linear_kernels
linear = torch.nn.Linear(4, 4)
print(linear_kernels(lambda x: linear(x), {"x": torch.randn(2, 4)}))
print("python stderr still works", file=sys.stderr)
"""


def test_profiling_prints_no_cpp_lines_to_stderr():
    """A fresh process: kineto prints "gpuGetDeviceCount failed" (CUDA builds) or "USDT ... profiler_start" (2.13)."""
    done = subprocess.run([sys.executable, "-c", PROFILE_ONCE], capture_output=True, text=True, timeout=300, check=True)
    assert "aten::addmm" in done.stdout
    assert not CPP_LOG_LINE.search(done.stderr), done.stderr
    assert "python stderr still works" in done.stderr


def test_quiet_profile_still_profiles():
    with quiet_profile() as profile:
        torch.mm(torch.randn(8, 8), torch.randn(8, 8))
    assert "aten::mm" in {event.key for event in profile.key_averages()}


def test_a_process_without_stderr_descriptor_is_left_alone(monkeypatch):
    """pythonw and some services have no descriptor 2: silencing it must not fail there."""
    from cpu_inference_helpers.infra import log_levels

    def no_descriptor(fd):
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(log_levels.os, "dup", no_descriptor)
    ran = []
    with log_levels.process_stderr_silenced():
        ran.append(True)
    assert ran == [True]
