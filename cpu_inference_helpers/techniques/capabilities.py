"""What this CPU and this Python environment can do for inference.

The report answers the questions that decide which fast path is worth taking:
which vendor (MKL's fp32 GEMM is slow on non-Intel CPUs), which ISA extensions
(AVX-512, native bf16 through AVX512_BF16 or AMX, VNNI), whether oneDNN can run
bf16, and which torch / IPEX / transformers versions are installed.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpu_inference_helpers.infra.cpus import usable_cpu_count as usable_cpu_count  # re-exported
from cpu_inference_helpers.infra.versions import installed_version

if TYPE_CHECKING:
    from cpu_inference_helpers.techniques.ipex_support import IpexStatus

# /proc/cpuinfo flag names (x86) and Features names (ARM) that matter for inference.
_X86_FLAGS = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512_bf16": "avx512_bf16",
    "avx512_vnni": "avx512_vnni",
    "avx512_fp16": "avx512_fp16",
    "amx_tile": "amx_tile",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
}
# x86 vendor_id strings of CPUs on which MKL does not dispatch its fast kernels.
_X86_NON_INTEL_VENDORS = {"AuthenticAMD", "HygonGenuine", "CentaurHauls", "  Shanghai  "}
_ARM_FEATURES = {"asimd": "neon", "sve": "sve", "bf16": "arm_bf16", "i8mm": "i8mm"}


@dataclass(frozen=True)
class CpuCapabilities:
    """A snapshot of the CPU's inference-relevant features and the installed stack."""

    vendor: str
    model_name: str
    architecture: str
    logical_cores: int
    torch_threads: int
    isa: dict[str, bool]
    torch_cpu_capability: str
    onednn_available: bool
    onednn_bf16_usable: bool
    versions: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    #: IPEX's status when `detect_capabilities(include_ipex=True)` probed it (which imports IPEX), else None.
    ipex: IpexStatus | None = None
    #: The C++ compiler torch.compile's Inductor (and AOTInductor) would use, or None (`inductor_compiler`).
    cpp_compiler: str | None = None

    @property
    def is_intel(self) -> bool:
        return self.vendor == "GenuineIntel"

    @property
    def has_avx512(self) -> bool:
        return self.isa.get("avx512f", False)

    @property
    def has_amx(self) -> bool:
        return self.isa.get("amx_tile", False) and self.isa.get("amx_bf16", False)

    @property
    def has_int8_dot_product(self) -> bool:
        """True with AVX-512 VNNI or AMX: int8 products added up in 32 bits by one instruction. Without them
        x86 adds u8 x s8 pairs into 16 bits with saturation (`vpmaddubsw`), and int8 matrix products are slow."""
        return self.has_amx or self.isa.get("avx512_vnni", False)

    @property
    def native_bf16(self) -> bool:
        """True when the CPU has bf16 arithmetic instructions (AVX512_BF16, AMX-BF16 or ARM BF16).

        Without them oneDNN may still accept bf16 on AVX-512 CPUs, but it emulates the
        arithmetic and bf16 usually runs slower than fp32.
        """
        return (
            self.isa.get("avx512_bf16", False)
            or self.isa.get("amx_bf16", False)
            or self.isa.get("arm_bf16", False)
        )

    @property
    def inductor_compiler_available(self) -> bool:
        """Whether torch.compile's Inductor (and AOTInductor) found its C++ compiler when this report was made.

        The report's answer, read by `auto`'s policy; `inductor_compiler_available()` asks again, live.
        """
        return self.cpp_compiler is not None

    @property
    def prefers_onednn_fp32(self) -> bool:
        """True where PyTorch's default fp32 GEMM (MKL) is known to take a slow path.

        MKL picks its fast AVX-512 kernels only on Intel CPUs; on AMD and other vendors
        oneDNN's own JIT kernels are the faster fp32 choice.
        """
        return self.vendor in _X86_NON_INTEL_VENDORS

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-serialisable data, derived properties included."""
        data = asdict(self)
        data["ipex"] = self.ipex.as_dict() if self.ipex else None
        data.update(
            is_intel=self.is_intel,
            has_avx512=self.has_avx512,
            has_amx=self.has_amx,
            native_bf16=self.native_bf16,
            prefers_onednn_fp32=self.prefers_onednn_fp32,
            inductor_compiler_available=self.inductor_compiler_available,
        )
        return data

    def summary(self) -> str:
        """A human-readable multi-line report."""

        def yes(flag: bool) -> str:
            return "yes" if flag else "no"

        isa_line = ", ".join(f"{name}={yes(value)}" for name, value in self.isa.items())
        gemm = "prefer oneDNN (MKL is slow on this vendor)" if self.prefers_onednn_fp32 else "MKL/default is fine"
        versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in self.versions.items())
        lines = [
            f"CPU:            {self.model_name} ({self.vendor}, {self.architecture})",
            f"Cores:          {self.logical_cores} logical, torch uses {self.torch_threads} threads",
            f"ISA:            {isa_line}",
            f"torch kernels:  {self.torch_cpu_capability}; oneDNN {yes(self.onednn_available)}",
            f"bf16:           native {yes(self.native_bf16)}, oneDNN bf16 usable {yes(self.onednn_bf16_usable)}, "
            f"AMX {yes(self.has_amx)}",
            f"fp32 GEMM:      {gemm}",
            f"C++ compiler:   {self.cpp_compiler or 'none found: torch.compile and export fall back'} "
            "(Inductor's, for torch.compile and torch.export + AOTInductor)",
            f"Versions:       {versions}",
            f"IPEX:           {self.ipex.describe() if self.ipex else 'not probed (include_ipex=True imports it)'}",
        ]
        lines += [f"Note:           {note}" for note in self.notes]
        return "\n".join(lines)


def parse_cpuinfo(text: str) -> tuple[str, str, set[str]]:
    """Return (vendor, model name, flag set) from the text of /proc/cpuinfo (x86 or ARM)."""
    vendor, model_name, flags = "", "", set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "vendor_id" and not vendor:
            vendor = value
        elif key == "cpu implementer" and not vendor:
            vendor = f"ARM implementer {value}"
        elif key in ("model name", "hardware") and not model_name:
            model_name = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return vendor, model_name, flags


def isa_from_flags(flags: set[str]) -> dict[str, bool]:
    """Map raw cpuinfo flags to the feature names used in the report."""
    isa = {name: flag in flags for flag, name in _X86_FLAGS.items()}
    if any(feature in flags for feature in _ARM_FEATURES):
        isa.update({name: feature in flags for feature, name in _ARM_FEATURES.items()})
    return isa


def _onednn_status() -> tuple[str, bool, bool]:
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    available = bool(torch.backends.mkldnn.is_available())
    try:
        bf16 = available and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    return capability, available, bf16


def detect_capabilities(cpuinfo_text: str | None = None, include_ipex: bool = False) -> CpuCapabilities:
    """Detect the CPU's features and the installed stack.

    Args:
        cpuinfo_text: the content of /proc/cpuinfo; read from the system when omitted
            (pass a string to inspect another machine's report).
        include_ipex: also probe IPEX, which imports it (seconds, and it patches torch): only when asked.
    """
    if cpuinfo_text is not None and not isinstance(cpuinfo_text, str):
        hint = " (decode it first: data.decode())" if isinstance(cpuinfo_text, (bytes, bytearray)) else ""
        raise ValueError(f"cpuinfo_text must be the text of a /proc/cpuinfo as a str, not "
                         f"{type(cpuinfo_text).__name__}{hint}; or None to read this machine's")
    import torch

    if cpuinfo_text is None:
        cpuinfo_path = Path("/proc/cpuinfo")
        cpuinfo_text = cpuinfo_path.read_text() if cpuinfo_path.exists() else ""
    vendor, model_name, flags = parse_cpuinfo(cpuinfo_text)
    notes = []
    if not flags:
        notes.append("no /proc/cpuinfo flags found: ISA features are reported as absent")
    capability, onednn, onednn_bf16 = _onednn_status()
    isa = isa_from_flags(flags)
    caps = CpuCapabilities(
        vendor=vendor or platform.processor() or "unknown",
        model_name=model_name or platform.processor() or "unknown",
        architecture=platform.machine(),
        logical_cores=os.cpu_count() or 1,
        torch_threads=torch.get_num_threads(),
        isa=isa,
        torch_cpu_capability=capability,
        onednn_available=onednn,
        onednn_bf16_usable=onednn_bf16,
        versions={
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": installed_version("transformers"),
            "intel-extension-for-pytorch": installed_version("intel-extension-for-pytorch"),
        },
        notes=notes,
        ipex=_probe_ipex() if include_ipex else None,
        cpp_compiler=inductor_compiler(),
    )
    if onednn_bf16 and not caps.native_bf16:
        notes.append("oneDNN accepts bf16 here but emulates it: expect bf16 to be slower than fp32")
    return caps


def inductor_compiler() -> str | None:
    """The path of the C++ compiler torch.compile's CPU backend (Inductor) would use, or None.

    Read live from Inductor's configuration (`torch._inductor.config.cpp.cxx`; None there means it searches
    g++, clang++ and c++ itself), so a changed configuration shows at once.
    """
    try:
        from torch._inductor import config as inductor_config

        configured = inductor_config.cpp.cxx
    except (ImportError, AttributeError):
        return None
    configured = configured if isinstance(configured, tuple) else (configured,)
    names = [name for name in configured if isinstance(name, str)]
    if None in configured:  # None: Inductor searches the usual compilers itself
        names += ["g++", "clang++", "c++"]
    return next((found for found in map(shutil.which, names) if found), None)


def inductor_compiler_available() -> bool:
    """Whether torch.compile's CPU backend (Inductor) finds the C++ compiler it needs, asked now.

    (A `CpuCapabilities` report keeps the answer of when it was made: `report.inductor_compiler_available`.)
    """
    return inductor_compiler() is not None


def _probe_ipex() -> IpexStatus:
    from cpu_inference_helpers.techniques.ipex_support import probe_ipex  # imported here: probing IPEX imports it

    return probe_ipex()


@lru_cache(maxsize=1)
def cached_capabilities() -> CpuCapabilities:
    """The capabilities of this machine, detected once per process."""
    return detect_capabilities()
