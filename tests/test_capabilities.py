import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cpuinfo_capabilities, requires_amx

from cpu_inference_helpers.techniques.capabilities import cached_capabilities, isa_from_flags, parse_cpuinfo


def test_parse_cpuinfo_reads_vendor_model_and_flags():
    vendor, model, flags = parse_cpuinfo(
        "vendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: avx2 amx_tile\nvendor_id\t: Other\n"
    )
    assert (vendor, model) == ("GenuineIntel", "Xeon")
    assert flags == {"avx2", "amx_tile"}


@pytest.mark.parametrize(
    ("machine", "is_intel", "native_bf16", "amx", "prefers_onednn"),
    [
        ("amd_zen4", False, True, False, True),
        ("intel_sapphire_rapids", True, True, True, False),
        ("intel_skylake", True, False, False, False),
        ("amd_zen3_avx2", False, False, False, True),  # this project's AVX2-only kind (2026-12-03, 2026-12-06)
    ],
)
def test_x86_machines_are_classified(machine, is_intel, native_bf16, amx, prefers_onednn):
    caps = cpuinfo_capabilities(machine)
    assert caps.is_intel is is_intel
    assert caps.native_bf16 is native_bf16
    assert caps.has_amx is amx
    assert caps.has_avx512 is (machine != "amd_zen3_avx2")
    assert caps.prefers_onednn_fp32 is prefers_onednn


def test_arm_bf16_feature_counts_as_native_bf16():
    isa = isa_from_flags(parse_cpuinfo((Path(__file__).parent / "cpuinfo" / "arm_graviton3.txt").read_text())[2])
    assert isa["arm_bf16"] and isa["neon"] and not isa["avx512f"]
    caps = cpuinfo_capabilities("arm_graviton3")
    assert caps.native_bf16 and not caps.prefers_onednn_fp32


def test_missing_cpuinfo_is_reported_not_guessed():
    from cpu_inference_helpers.techniques.capabilities import detect_capabilities

    caps = detect_capabilities("")
    assert not any(caps.isa.values())
    assert any("no /proc/cpuinfo" in note for note in caps.notes)


def _this_machine_flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    for line in path.read_text().splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.split(":", 1)[1].split())
    pytest.skip("no flags line in /proc/cpuinfo")


def test_report_matches_this_machines_cpuinfo():
    flags = _this_machine_flags()
    caps = cached_capabilities()
    for name in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"):
        assert caps.isa[name] == (name in flags), name
    assert caps.native_bf16 == bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)


def test_summary_and_dict_agree():
    caps = cached_capabilities()
    data = caps.as_dict()
    json.dumps(data)  # serialisable
    assert data["native_bf16"] == caps.native_bf16
    summary = caps.summary()
    assert caps.model_name in summary
    assert f"native {'yes' if caps.native_bf16 else 'no'}" in summary


@requires_amx
def test_amx_machine_can_run_onednn_bf16():
    caps = cached_capabilities()
    assert caps.onednn_bf16_usable and caps.native_bf16


def test_info_cli_prints_json_report():
    completed = subprocess.run(
        [sys.executable, "-m", "cpu_inference_helpers", "info", "--json"],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(completed.stdout)
    assert report["isa"] == cached_capabilities().isa
    assert set(report["versions"]) >= {"torch", "transformers", "intel-extension-for-pytorch"}


def test_info_cli_rejects_unknown_command():
    completed = subprocess.run(
        [sys.executable, "-m", "cpu_inference_helpers", "frobnicate"], capture_output=True, text=True
    )
    assert completed.returncode == 2
    assert "invalid choice" in completed.stderr


def test_the_report_names_the_cpp_compiler_torch_compile_would_use():
    import shutil

    import torch._inductor.config as inductor_config

    from cpu_inference_helpers.techniques.capabilities import detect_capabilities

    with inductor_config.patch({"cpp.cxx": ("g++",)}):
        report = detect_capabilities()
        assert report.cpp_compiler == shutil.which("g++")
        assert ("C++ compiler:   none found" in report.summary()) == (shutil.which("g++") is None)
    with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        report = detect_capabilities()
        assert report.cpp_compiler is None and "none found: torch.compile and export fall back" in report.summary()
        assert report.as_dict()["cpp_compiler"] is None
