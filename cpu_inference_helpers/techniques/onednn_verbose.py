"""Which oneDNN kernels ran, read from oneDNN's own verbose output: the evidence of AMX, AVX512_BF16 or emulation.

`torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON)` makes oneDNN print one line per primitive it
runs, naming the implementation and the instruction set it was built for, e.g.
`onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,...`. oneDNN prints from C, to the
process's file descriptor 1, which Jupyter does not show in the cell that ran it: `native_output_captured`
collects it, and `onednn_kernels` reads it.

    with native_output_captured() as captured, torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        linear(x)
    print(onednn_kernels(captured.text))
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: Words in a oneDNN implementation name and the instruction set they mean, most specific first.
ISA_NAMES = (
    ("amx", "AMX tiles"),
    ("avx512_core_fp16", "AVX-512 FP16"),
    ("avx512_core_bf16", "AVX512_BF16"),
    ("avx2_vnni_2", "AVX-VNNI-INT8/NE-CONVERT"),
    ("avx512_core_vnni", "AVX-512 VNNI"),
    ("avx512_core", "AVX-512 (bf16 converted to fp32: emulated)"),
    ("avx2", "AVX2 (bf16 converted to fp32: emulated)"),
    ("ref", "reference C++ code (slow)"),
)


@dataclass
class CapturedOutput:
    """What the process wrote to its standard output at the C level while the context was open."""

    text: str = ""


@dataclass(frozen=True)
class OnednnKernel:
    """One oneDNN primitive execution: its kind (matmul, inner_product...), implementation and the ISA that means."""

    primitive: str
    implementation: str
    data_types: str
    shape: str

    @property
    def isa(self) -> str:
        """The instruction set the implementation was built for, in words."""
        return implementation_isa(self.implementation)


@dataclass
class OnednnReport:
    """oneDNN's description of the CPU ("isa:" line) and the kernels that ran, in order."""

    cpu_isa: str | None = None
    kernels: list[OnednnKernel] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"oneDNN sees: {self.cpu_isa or 'no isa line (verbose was already on, or oneDNN did not run)'}"]
        lines += [f"{k.primitive:14s} {k.implementation:32s} {k.data_types:28s} {k.shape:20s} -> {k.isa}"
                  for k in self.kernels]
        if not self.kernels:
            lines.append("no oneDNN kernel ran (fp32 Linear runs on MKL or PyTorch's own GEMM, not oneDNN)")
        return "\n".join(lines)


def implementation_isa(implementation: str) -> str:
    """'brg_matmul:avx512_core_amx' -> 'AMX tiles'; an implementation naming no known ISA is returned as is."""
    for word, name in ISA_NAMES:
        if word in implementation:
            return name
    return implementation


def onednn_kernels(text: str) -> OnednnReport:
    """Parse oneDNN verbose output (both the `v1,primitive,exec` form of oneDNN 3.x and the older `exec` form)."""
    report = OnednnReport()
    for line in text.splitlines():
        if not line.startswith(("onednn_verbose", "dnnl_verbose")):
            continue
        fields = line.split(",")
        if "info" in fields[:4] and any(f.startswith("isa:") for f in fields):
            report.cpu_isa = next(f for f in fields if f.startswith("isa:"))[len("isa:"):]
            continue
        if "exec" not in fields[:4]:
            continue
        at = fields.index("exec")
        if len(fields) < at + 8:
            continue
        primitive, implementation = fields[at + 2], fields[at + 3]
        data_types = " ".join(part.split("::")[0] for part in fields[at + 5].split())
        shape = next((f for f in reversed(fields[:-1]) if "x" in f and f[0].isdigit()), "")
        report.kernels.append(OnednnKernel(primitive, implementation, data_types, shape))
    return report


@contextmanager
def native_output_captured() -> Iterator[CapturedOutput]:
    """Collect what C code writes to file descriptor 1 (oneDNN's verbose lines) while the block runs.

    Python's own `print` output is unaffected where it does not go to fd 1 (Jupyter); in a terminal it is
    captured too, so print after the block.
    """
    captured = CapturedOutput()
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield captured
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
