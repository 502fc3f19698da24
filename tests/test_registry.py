"""The path registry: one entry per (mode, precision), options honoured or refused, and the front door's contract."""

import threading
import time

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_ipex
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from cpu_inference_helpers.modes import AUTO, MODES, ModeSpec, parse_mode_list
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.registry import OPTIONS, PATHS, honoured_options, inductor_compiler_available
from cpu_inference_helpers.techniques.dtypes import PRECISIONS
from cpu_inference_helpers.techniques.parity import max_abs_difference
from cpu_inference_helpers.techniques.precision import GLOBAL_SWITCHES_LOCK


def test_every_mode_and_precision_has_one_entry():
    assert set(PATHS) == {ModeSpec(mode, precision) for mode in MODES for precision in PRECISIONS}
    for spec, path in PATHS.items():
        assert path.spec == spec and path.honours <= set(OPTIONS), spec
        assert "warmup_steps" in path.honours


class _MustNotRun(torch.nn.Module):
    """A model whose forward fails loudly: a refusal must come before any work."""

    def forward(self, **inputs):
        raise AssertionError("the model ran before the options were checked")


@pytest.mark.parametrize(("mode", "precision", "option", "value"), [
    ("eager", "fp32", "freeze", True),
    ("eager", "fp32", "verify", False),
    ("jit", "fp32", "dynamic_shapes", True),
    ("ipex", "bf16", "auto_kernel_selection", True),
    ("ipex+jit", "bf32", "auto_kernel_selection", False),
    ("compile", "int8", "dynamic_shapes", False),
    ("eager", "int8", "calibration", []),
    ("ipex+jit", "int8", "verify", True),
    ("jit", "fp32", "allow_emulated_bf16", True),
    ("auto", "fp32", "calibration", []),
    ("jit", "int8", "smooth_quant_alpha", 0.5),
    ("export", "int8", "smooth_quant_alpha", 0.5),
    ("export", "int8", "calibration", []),
    ("auto", "bf16", "smooth_quant_alpha", 0.5),
])
def test_an_option_the_path_would_ignore_is_refused_before_any_work(mode, precision, option, value, example_batch):
    with pytest.raises(ValueError, match=f"would ignore the option.*{option}") as raised:
        prepare_for_inference(_MustNotRun(), example_batch, mode=mode, precision=precision, **{option: value})
    honouring = [spec.name for spec, path in PATHS.items() if option in path.honours]
    assert honouring and honouring[0] in str(raised.value)  # it says which paths do honour it


def test_smooth_quant_alpha_is_honoured_by_static_int8_only_and_checked(example_batch):
    calibrated = ["ipex+jit:int8", "compile:int8"]
    assert [spec.name for spec, path in PATHS.items() if "smooth_quant_alpha" in path.honours] == calibrated
    assert [spec.name for spec, path in PATHS.items() if "calibration" in path.honours] == calibrated
    assert "smooth_quant_alpha" in honoured_options(ModeSpec(AUTO, "int8"))
    with pytest.raises(ValueError, match=r"smooth_quant_alpha must lie in \[0, 1\]"):
        prepare_for_inference(_MustNotRun(), example_batch, mode="ipex+jit", precision="int8", smooth_quant_alpha=1.5)


@requires_ipex
def test_static_int8_uses_the_smooth_quant_alpha_given(tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", precision="int8",
                                  calibration=[example_batch], smooth_quant_alpha=0.35, warmup_steps=1)
    assert ready.record.ran_as == "ipex+jit:int8", ready.record.summary()
    assert "SmoothQuant alpha 0.35" in " ".join(ready.record.applied)


def test_auto_honours_what_any_of_its_candidates_honours():
    assert "calibration" in honoured_options(ModeSpec(AUTO, "int8"))
    assert "calibration" not in honoured_options(ModeSpec(AUTO, "fp32"))
    assert {"freeze", "verify"} <= honoured_options(ModeSpec(AUTO, "bf16"))


@pytest.mark.parametrize("bad", [lambda batch: tuple(batch.values()), lambda batch: list(batch.values())])
def test_the_front_door_refuses_positional_example_inputs(bad, example_batch):
    with pytest.raises(ValueError, match="dict of named tensors"):
        prepare_for_inference(_MustNotRun(), bad(example_batch), mode="jit")


def test_a_prepared_model_refuses_positional_calls(tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="eager", warmup_steps=0)
    with pytest.raises(TypeError, match="named tensors"):
        ready(example_batch["input_ids"])


def test_negative_warmup_is_refused(example_batch):
    with pytest.raises(ValueError, match="warmup_steps"):
        prepare_for_inference(_MustNotRun(), example_batch, mode="eager", warmup_steps=-1)


def test_one_precision_attribute_and_the_request_kept(tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="eager", precision="int8")
    assert ready.precision == ready.record.precision == "int8" and ready.dtype == torch.float32
    auto = prepare_for_inference(tiny_model, example_batch, mode="eager", precision="auto")
    assert auto.record.requested_precision == "auto" and auto.precision in ("fp32", "bf16")


def test_jit_honours_freeze(tiny_model, example_batch):
    for freeze in (True, False):
        ready = prepare_for_inference(tiny_model, example_batch, mode="jit", freeze=freeze)
        assert ready.record.mode == "jit"
        # a frozen graph holds its weights as constants, an unfrozen one as parameters
        assert bool(list(ready.module.parameters())) is not freeze, freeze


@requires_ipex
def test_ipex_static_int8_honours_freeze_and_warmup(tiny_model, example_batch, monkeypatch):
    frozen = []
    real_freeze = torch.jit.freeze
    monkeypatch.setattr(torch.jit, "freeze", lambda *a, **k: frozen.append(1) or real_freeze(*a, **k))
    for freeze in (True, False):
        frozen.clear()
        ready = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", precision="int8", freeze=freeze,
                                      calibration=[example_batch], warmup_steps=1)
        assert ready.record.ran_as == "ipex+jit:int8", ready.record.summary()
        assert bool(frozen) is freeze
        assert type(ready(**example_batch)) is QuestionAnsweringModelOutput


def test_the_mode_grammar_names_and_folders():
    specs = parse_mode_list("eager, IPEX_JIT:BF16 ,auto:int8")
    assert [spec.name for spec in specs] == ["eager", "ipex+jit:bf16", "auto:int8"]
    assert [spec.folder for spec in specs] == ["eager", "ipex+jit-bf16", "auto-int8"]
    with pytest.raises(ValueError, match="twice"):
        parse_mode_list("jit,jit:fp32")


def _jit_autocast_mode() -> bool:
    previous = torch._C._jit_set_autocast_mode(True)
    torch._C._jit_set_autocast_mode(previous)
    return previous


def _prepared_pair(tiny_model, example_batch):
    """A traced fp32 and a traced bf16 graph (the bf16 one flips TorchScript's autocast pass per call)."""
    fp32 = prepare_for_inference(tiny_model, example_batch, mode="jit")
    bf16 = prepare_for_inference(tiny_model, example_batch, mode="jit", precision="bf16", allow_emulated_bf16=True)
    assert fp32.record.ran_as == "jit" and bf16.record.ran_as == "jit:bf16"
    return {"fp32": fp32, "bf16": bf16}


def test_models_of_different_precision_called_alternately_give_their_own_outputs(tiny_model, example_batch):
    models = _prepared_pair(tiny_model, example_batch)
    if inductor_compiler_available():
        models["compile"] = prepare_for_inference(tiny_model, example_batch, mode="compile", dynamic_shapes=False)
    alone = {name: model(**example_batch) for name, model in models.items()}
    switches = (_jit_autocast_mode(), torch.get_float32_matmul_precision())
    for _ in range(3):
        for name, model in models.items():
            assert max_abs_difference(alone[name], model(**example_batch)) == 0, name
    assert (_jit_autocast_mode(), torch.get_float32_matmul_precision()) == switches  # restored after each call


def test_models_called_from_two_threads_give_their_own_outputs(tiny_model, example_batch):
    models = _prepared_pair(tiny_model, example_batch)
    alone = {name: model(**example_batch) for name, model in models.items()}
    differences: dict[str, list[float]] = {name: [] for name in models}

    def call_repeatedly(name):
        for _ in range(10):
            differences[name].append(max_abs_difference(alone[name], models[name](**example_batch)))

    threads = [threading.Thread(target=call_repeatedly, args=(name,)) for name in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(values) == 10 and max(values) == 0 for values in differences.values()), differences


def test_calls_that_flip_process_wide_switches_wait_for_each_other(tiny_model, example_batch):
    """The traced bf16 graph's call takes the lock (it flips TorchScript's autocast pass); fp32 eager does not."""
    bf16 = _prepared_pair(tiny_model, example_batch)["bf16"]
    eager = prepare_for_inference(tiny_model, example_batch, mode="eager")
    finished = {}

    def call(name, model):
        model(**example_batch)
        finished[name] = time.perf_counter()

    with GLOBAL_SWITCHES_LOCK:
        held_until = time.perf_counter() + 0.5
        threads = [threading.Thread(target=call, args=item) for item in (("bf16", bf16), ("eager", eager))]
        for thread in threads:
            thread.start()
        threads[1].join(timeout=30)
        time.sleep(max(0.0, held_until - time.perf_counter()))
        released = time.perf_counter()
    threads[0].join(timeout=30)
    assert finished["eager"] < released <= finished["bf16"]


@requires_ipex
@pytest.mark.parametrize("cpu", ["intel_sapphire_rapids", "amd_zen4"])
def test_ipex_static_int8_runs_its_float_parts_in_bf16_only_on_amx(cpu, tiny_model, example_batch):
    """On AMX, IPEX's int8 graph is traced and called under bf16 autocast (int8-mixed-bf16); elsewhere fp32."""
    capabilities = cpuinfo_capabilities(cpu)
    ready = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", precision="int8",
                                  calibration=[example_batch], capabilities=capabilities)
    assert ready.record.ran_as == "ipex+jit:int8", ready.record.summary()
    assert ("int8-mixed-bf16" in " ".join(ready.record.applied)) == capabilities.has_amx
    assert any(step.step == "int8 float parts" for step in ready.record.choices)
    with torch.no_grad():
        got, want = ready(**example_batch).start_logits, tiny_model(**example_batch).start_logits
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 0.2 * want.abs().max()  # int8 (and bf16) rounding, not a different model
