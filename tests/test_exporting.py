"""Mode export (torch.export + AOTInductor): parity, dynamic shapes, bf16, int8, its fallbacks, saving and loading."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_ipex
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from cpu_inference_helpers.bf32_check import EXPORT_REASON, bf32_fallback_reason_for_path
from cpu_inference_helpers.deployment import load_prepared, save_prepared
from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.paths import int8_builders, int8_speed
from cpu_inference_helpers.paths.int8_speed import kernel_verdict, slowdown_verdict
from cpu_inference_helpers.record import Built
from cpu_inference_helpers.registry import inductor_compiler_available
from cpu_inference_helpers.techniques.deprecations import TORCHSCRIPT
from cpu_inference_helpers.techniques.exporting import SkipsMaskWhenUnpadded, export_refusal, load_package
from cpu_inference_helpers.techniques.parity import max_abs_difference
from cpu_inference_helpers.techniques.tracing import trace_model

pytestmark = pytest.mark.skipif(not inductor_compiler_available(), reason="AOTInductor needs a C++ compiler")


@pytest.fixture(scope="module")
def exported(tiny_model, example_batch, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.pt2"
    return prepare_for_inference(tiny_model, example_batch, mode="export", package_path=path), path


def _resized(batch: dict[str, torch.Tensor], rows: int, length: int) -> dict[str, torch.Tensor]:
    return {name: tensor.repeat(2, 1)[:rows, :length] for name, tensor in batch.items()}


def test_export_matches_eager_at_the_example_and_at_other_batch_sizes_and_lengths(exported, tiny_model, example_batch):
    ready, path = exported
    assert ready.record.ran_as == "export" and not ready.record.fell_back, ready.record.summary()
    assert path.is_file() and "dynamic batch and sequence" in ready.record.applied[-1]
    for rows, length in [(2, 32), (1, 32), (3, 20), (4, 7)]:  # one package for every shape
        inputs = _resized(example_batch, rows, length)
        with torch.no_grad():
            expected = tiny_model(**inputs)
        outputs = ready(**inputs)
        assert type(outputs) is QuestionAnsweringModelOutput
        assert outputs.start_logits.shape == (rows, length)
        assert max_abs_difference(expected, outputs) < 1e-4


def test_a_batch_of_one_example_exports_a_dynamic_batch(tiny_model, example_batch):
    one = {name: tensor[:1] for name, tensor in example_batch.items()}  # export would specialise a size-1 dim
    ready = prepare_for_inference(tiny_model, one, mode="export")
    assert ready.record.ran_as == "export", ready.record.summary()
    with torch.no_grad():
        assert max_abs_difference(tiny_model(**example_batch), ready(**example_batch)) < 1e-4


def test_the_package_names_its_inputs_and_outputs_and_refuses_others(exported, example_batch):
    _, path = exported
    package = load_package(path)
    assert package.input_names == list(example_batch) and package.output_names == ["start_logits", "end_logits"]
    with pytest.raises(ValueError, match="missing attention_mask"):
        package(**{name: tensor for name, tensor in example_batch.items() if name != "attention_mask"})


def test_bf16_export_computes_in_bf16(tiny_model, example_batch):
    # An autocast context around torch.export is ignored (it would export fp32): the region must be inside forward.
    ready = prepare_for_inference(tiny_model, example_batch, mode="export", precision="bf16", allow_emulated_bf16=True)
    assert ready.record.ran_as == "export:bf16", ready.record.summary()
    outputs = ready(**example_batch)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = tiny_model(**example_batch)
    assert outputs.start_logits.dtype == torch.bfloat16
    assert max_abs_difference(autocast, outputs) < 0.1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: torch 2.8 loses errors raised in autocast regions
def test_export_refuses_a_branch_on_data_naming_its_line_and_falls_back_to_eager(precision, caplog):
    model = SkipsMaskWhenUnpadded().eval()
    example = {"input_ids": torch.randint(0, 99, (2, 16)), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(model, example, mode="export", precision=precision,
                                      allow_emulated_bf16=True if precision == "bf16" else None)
    assert ready.record.ran_as == ModeSpec("eager", precision).name
    assert [s.step for s in ready.record.fallbacks] == ["export"]
    reason = ready.record.fallbacks[0].reason
    assert "data-dependent" in reason and "if attention_mask.all():" in reason and "exporting.py:" in reason
    assert "torch.export not applied" in caplog.text
    padded = dict(example, attention_mask=torch.tensor([[1] * 12 + [0] * 4] * 2))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        expected = model(**padded)["logits"]
    assert torch.equal(ready(**padded)["logits"], expected)  # eager: right on every input


def test_trace_bakes_the_branch_in_and_the_contrasting_input_check_catches_it():
    model = SkipsMaskWhenUnpadded().eval()
    example = {"input_ids": torch.randint(0, 99, (2, 16)), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example_kwarg_inputs=example, strict=False)
    padded = dict(example, attention_mask=torch.tensor([[1] * 12 + [0] * 4] * 2))
    assert not torch.allclose(traced(**padded)["logits"], model(**padded)["logits"])  # silently wrong
    built = trace_model(model, example)
    assert built.mode == "eager" and "on another input it differs from eager" in built.reason


def test_export_refusal_reads_the_user_line_from_exports_message():
    error = RuntimeError('Could not guard on data-dependent expression Eq(u0, 1) (unhinted: Eq(u0, 1)).\n'
                         'The following call raised this error:\n'
                         '  File "/site-packages/torch/x.py", line 3, in inner\n    pass\n'
                         '  File "/home/me/model.py", line 41, in forward\n    if x.sum() > 0:  # why\n')
    assert export_refusal(error) == ("RuntimeError: Could not guard on data-dependent expression Eq(u0, 1) "
                                     "(at model.py:41 in forward: if x.sum() > 0:)")


def test_a_failed_export_leaves_an_earlier_package_untouched(exported):
    _, path = exported
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    model = SkipsMaskWhenUnpadded().eval()
    example = {"input_ids": torch.randint(0, 99, (1, 8)), "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    ready = prepare_for_inference(model, example, mode="export", package_path=path)
    assert ready.record.fell_back
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not list(path.parent.glob("*.partial*"))


def test_the_saved_package_loads_and_answers_the_same_in_a_fresh_process(exported, example_batch, tmp_path):
    ready, _ = exported
    saved = save_prepared(ready, tmp_path / "model.pt2")
    torch.save(example_batch, tmp_path / "inputs.pt")
    script = textwrap.dedent(f"""
        import torch
        from cpu_inference_helpers.deployment import load_prepared
        ready = load_prepared({str(saved)!r})
        outputs = ready(**torch.load({str(tmp_path / 'inputs.pt')!r}))
        torch.save({{"start": outputs.start_logits, "end": outputs.end_logits, "type": type(outputs).__name__,
                    "ran_as": ready.record.ran_as, "applied": ready.record.applied}}, {str(tmp_path / 'out.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    fresh = torch.load(tmp_path / "out.pt")
    expected = ready(**example_batch)
    assert fresh["type"] == "QuestionAnsweringModelOutput" and fresh["ran_as"] == "export"
    assert fresh["applied"][-1] == "loaded from model.pt2"
    assert torch.equal(fresh["start"], expected.start_logits) and torch.equal(fresh["end"], expected.end_logits)


def test_jit_saves_and_loads_as_torchscript_and_notes_its_deprecation(tiny_model, example_batch, tmp_path):
    ready = prepare_for_inference(tiny_model, example_batch, mode="jit")
    assert TORCHSCRIPT.note() in ready.record.notes  # told once, in the record
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # and not as a warning per call
        loaded = load_prepared(save_prepared(ready, tmp_path / "model.pt"))
    outputs = loaded(**example_batch)
    assert type(outputs) is QuestionAnsweringModelOutput and loaded.record.ran_as == "jit"
    assert 0 < loaded.record.setup_seconds < ready.record.setup_seconds  # loading, not tracing again
    # (close, not equal: TorchScript's profiling executor optimises a graph after its first calls, in each process)
    assert max_abs_difference(ready(**example_batch), outputs) < 1e-5


def test_saving_refuses_what_has_no_standalone_file(tiny_model, example_batch, tmp_path):
    eager = prepare_for_inference(tiny_model, example_batch, mode="eager")
    with pytest.raises(ValueError, match="no standalone file"):
        save_prepared(eager, tmp_path / "model.pt2")
    jit = prepare_for_inference(tiny_model, example_batch, mode="jit")
    with pytest.raises(ValueError, match=r"\.pt file"):
        save_prepared(jit, tmp_path / "model.pt2")
    with pytest.raises(FileNotFoundError, match="nothing saved"):
        load_prepared(tmp_path / "absent.pt2")
    with pytest.raises(ValueError, match="jit would ignore the option.*package_path.*honoured by export"):
        prepare_for_inference(tiny_model, example_batch, mode="jit", package_path=tmp_path / "x.pt2")


def test_export_int8_runs_torchao_or_falls_back_to_dynamic_int8(tiny_model, example_batch, caplog):
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(tiny_model, example_batch, mode="export", precision="int8")
    if importlib.util.find_spec("torchao") is None:
        assert ready.record.ran_as == "eager:int8"
        assert ready.record.fallbacks[0].step == "export:int8" and "torchao is not installed" in caplog.text
    elif ready.record.ran_as == "eager:int8":  # only where int8 was timed slower than fp32 (int8_speed)
        [fallback] = [step for step in ready.record.fallbacks if step.step == "export:int8"]
        assert "eager fp32's time" in fallback.reason or "torch._int_mm took" in fallback.reason, fallback.reason
    else:
        assert ready.record.ran_as == "export:int8", ready.record.summary()
        with torch.no_grad():
            eager = tiny_model(**example_batch)
        assert max_abs_difference(eager, ready(**example_batch)) < 0.5  # int8 moves logits, not answers


def test_an_int8_build_slower_than_fp32_is_refused_with_the_timings_and_the_cpus_reason():
    zen3, sapphire_rapids = cpuinfo_capabilities("amd_zen3_avx2"), cpuinfo_capabilities("intel_sapphire_rapids")
    problem = slowdown_verdict(11.166, 0.567, zen3)  # export:int8 on the AVX2-only EPYC, 384 x 1
    assert problem.startswith("the int8 build took 19.7x eager fp32's time on the example inputs (11166 against "
                              "567 ms)") and "neither AVX-512 VNNI nor AMX" in problem, problem
    assert "its int8 kernels are slower than fp32's here" in slowdown_verdict(0.9, 0.5, sapphire_rapids)
    assert slowdown_verdict(0.74, 0.5, zen3) is None  # under 1.5x: kept
    assert slowdown_verdict(0.288, 0.567, zen3) is None  # faster: kept


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="export:int8 needs torchao")
def test_export_int8_slower_than_fp32_falls_back_to_dynamic_int8_and_says_why(tiny_model, example_batch,
                                                                               monkeypatch):
    # On an AVX2-only EPYC the real package took 20x eager fp32's time (torch._int_mm has no fast kernel there);
    # here a package that sleeps stands in for it on any CPU.
    def slow_package(quantized, request, precision):
        def run(**inputs):
            time.sleep(1.0)  # the tiny model's eager call takes milliseconds: far from 1.5x this even on a busy machine
            return quantized(**inputs)
        return Built(run, "export", precision, warmed_up=True)

    monkeypatch.setattr(int8_builders, "exported_model", slow_package)
    monkeypatch.setattr(int8_speed, "product_seconds", lambda *shape: (0.001, 0.001))  # the kernel probe passes
    ready = prepare_for_inference(tiny_model, example_batch, mode="export", precision="int8")
    assert ready.record.ran_as == "eager:int8", ready.record.summary()
    [fallback] = [step for step in ready.record.fallbacks if step.step == "export:int8"]
    assert "eager fp32's time on the example inputs" in fallback.reason


def test_an_int8_product_slower_than_fp32_is_refused_before_the_build_with_the_cpus_reason():
    zen3, sapphire_rapids = cpuinfo_capabilities("amd_zen3_avx2"), cpuinfo_capabilities("intel_sapphire_rapids")
    problem = kernel_verdict(0.02622, 0.000794, (256, 384, 384), zen3)  # torch._int_mm on the AVX2-only EPYC
    assert problem.startswith("torch._int_mm took 33.0x fp32 torch.mm's time on a 256x384 by 384x384 product "
                              "(26.22 against 0.79 ms), so the int8 package was not built")
    assert "neither AVX-512 VNNI nor AMX" in problem, problem
    assert "its int8 kernels are slower than fp32's here" in kernel_verdict(0.004, 0.001, (256, 384, 384),
                                                                             sapphire_rapids)
    assert kernel_verdict(0.0029, 0.001, (256, 384, 384), zen3) is None  # under 3x: the package is built and timed


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="export:int8 needs torchao")
def test_slow_int8_products_stop_export_int8_before_quantizing(tiny_model, example_batch, monkeypatch):
    """Building the package takes minutes where torch._int_mm is slow (127 s for MiniLM on an AVX2-only EPYC): a
    probe of one product refuses it first. Here the probe's timings are given, and quantizing must not start."""
    def must_not_quantize(model):
        raise AssertionError("export:int8 quantized the model although its int8 products were timed 30x slower")

    seen_shapes = []
    monkeypatch.setattr(int8_speed, "product_seconds", lambda *shape: seen_shapes.append(shape) or (0.03, 0.001))
    monkeypatch.setattr(int8_builders, "quantize_with_torchao", must_not_quantize)
    ready = prepare_for_inference(tiny_model, example_batch, mode="export", precision="int8")
    assert ready.record.ran_as == "eager:int8", ready.record.summary()
    [fallback] = [step for step in ready.record.fallbacks if step.step == "export:int8"]
    assert "torch._int_mm took 30.0x" in fallback.reason and "not built" in fallback.reason, fallback.reason
    first_linear = next(module for module in tiny_model.modules() if isinstance(module, torch.nn.Linear))
    assert seen_shapes == [(256, max(256, first_linear.in_features), max(256, first_linear.out_features))]


def test_the_kernel_probe_times_both_products_on_this_cpu():
    int8_seconds, fp32_seconds = int8_speed.product_seconds(256, 256, 256, calls=2)
    assert 0 < int8_seconds < 10 and 0 < fp32_seconds < 10


def test_export_bf32_builds_fp32_and_says_why(tiny_model, example_batch):
    """Even with AMX, export builds fp32: bf32 is read when a kernel runs, a package has its kernels compiled in."""
    amx = cpuinfo_capabilities("intel_sapphire_rapids")
    assert bf32_fallback_reason_for_path("export", tiny_model, example_batch, amx) == EXPORT_REASON
    ready = prepare_for_inference(tiny_model, example_batch, mode="export", precision="bf32", capabilities=amx)
    assert ready.record.ran_as == "export", ready.record.summary()
    [fallback] = [step for step in ready.record.fallbacks if step.step == "precision"]
    assert "compiled in" in fallback.reason


@requires_ipex
def test_an_ipex_graph_loads_in_a_fresh_process_that_imports_ipex_first(tiny_model, example_batch, tmp_path):
    ready = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", auto_kernel_selection=True)
    assert ready.record.ran_as == "ipex+jit", ready.record.summary()
    saved = save_prepared(ready, tmp_path / "ipex.pt")
    torch.save(example_batch, tmp_path / "inputs.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from cpu_inference_helpers.deployment import load_prepared
        assert "intel_extension_for_pytorch" not in sys.modules
        ready = load_prepared({str(saved)!r})  # imports IPEX: its operators must exist before torch.jit.load
        torch.save(ready(**torch.load({str(tmp_path / 'inputs.pt')!r})).start_logits, {str(tmp_path / 'out.pt')!r})
        print(ready.record.ran_as, "intel_extension_for_pytorch" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert result.stdout.split()[-2:] == ["ipex+jit", "True"]
    assert max_abs_difference(ready(**example_batch).start_logits, torch.load(tmp_path / "out.pt")) < 1e-4
