"""The table's structure: fallbacks declared as data and walked by one loop; precision decided by one policy."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import torch
from conftest import cpuinfo_capabilities

import cpu_inference_helpers
from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.paths import float_builders, int8_builders, precision_policy
from cpu_inference_helpers.paths.options import BuildOptions, BuildRequest
from cpu_inference_helpers.paths.unavailable import IPEX_UNUSABLE, TRACE_FAILED, PathUnavailable
from cpu_inference_helpers.record import Built, Step
from cpu_inference_helpers.registry import PATHS, build_path, fallback_chains
from cpu_inference_helpers.techniques.capabilities import cached_capabilities


def _request(model, batch, **options):
    return BuildRequest(model, dict(batch), BuildOptions(**options), cached_capabilities())


def _unavailable(*steps, **signal):
    def attempt(request):
        raise PathUnavailable(*steps, **signal)
    return attempt


def test_every_declared_chain_ends_at_an_entry_that_cannot_fail_without_cycles():
    for spec, entry in PATHS.items():
        chains = list(fallback_chains(spec))
        assert chains, spec
        for chain in chains:
            assert len(set(chain)) == len(chain), chain
            assert chain[-1].mode == "eager" and chain[-1].precision != "int8", (spec, chain)
            assert PATHS[chain[-1]].fallback_targets() == set(), chain
        # an entry with no fallback is exactly an eager floating-point one
        assert (entry.fallback is None) == (spec.mode == "eager" and spec.precision != "int8"), spec
    assert {tuple(chain) for chain in fallback_chains(ModeSpec("ipex+jit", "bf16"))} == {
        (ModeSpec("ipex+jit", "bf16"), ModeSpec("ipex", "bf16"), ModeSpec("eager", "bf16")),
        (ModeSpec("ipex+jit", "bf16"), ModeSpec("jit", "bf16"), ModeSpec("eager", "bf16")),
    }


def test_a_declared_cycle_or_unknown_fallback_is_refused(monkeypatch):
    jit, eager = ModeSpec("jit", "fp32"), ModeSpec("eager", "fp32")
    monkeypatch.setitem(PATHS, eager, dataclasses.replace(PATHS[eager], fallback=jit))
    with pytest.raises(ValueError, match="fallback cycle: jit -> eager -> jit"):
        list(fallback_chains(jit))
    monkeypatch.setitem(PATHS, eager, dataclasses.replace(PATHS[eager], fallback=ModeSpec("nowhere", "fp32")))
    with pytest.raises(ValueError, match="not in the table"):
        list(fallback_chains(jit))


def test_the_loop_builds_the_declared_fallback_with_the_unavailable_steps_first(monkeypatch, tiny_model,
                                                                               example_batch):
    compile_spec = ModeSpec("compile", "bf16")
    monkeypatch.setitem(PATHS, compile_spec, dataclasses.replace(
        PATHS[compile_spec], attempt=_unavailable(Step("compile", "no compiler"), Step("freeze", "not either"))))
    built = build_path(compile_spec, _request(tiny_model, example_batch))
    assert (built.mode, built.precision, built.model) == ("eager", "bf16", tiny_model)
    assert built.fallbacks == [Step("compile", "no compiler"), Step("freeze", "not either")]
    assert built.applied == ["bf16 autocast"]  # what the eager entry itself built


def test_the_failure_kind_picks_the_fallback_and_a_salvaged_result_ends_the_walk(monkeypatch, tiny_model,
                                                                                example_batch):
    spec, jit = ModeSpec("ipex+jit", "fp32"), ModeSpec("jit", "fp32")
    monkeypatch.setitem(PATHS, jit, dataclasses.replace(PATHS[jit], attempt=_unavailable(Step("jit", "no trace"))))
    monkeypatch.setitem(PATHS, spec, dataclasses.replace(
        PATHS[spec], attempt=_unavailable(Step("ipex", "not installed"), kind=IPEX_UNUSABLE)))
    built = build_path(spec, _request(tiny_model, example_batch))  # ipex+jit -> jit -> eager
    assert built.mode == "eager" and built.fallbacks == [Step("ipex", "not installed"), Step("jit", "no trace")]

    salvaged = Built(tiny_model, "ipex", "fp32", applied=["ipex.optimize"])
    monkeypatch.setitem(PATHS, spec, dataclasses.replace(
        PATHS[spec], attempt=_unavailable(Step("jit", "trace failed"), kind=TRACE_FAILED, salvaged=salvaged)))
    built = build_path(spec, _request(tiny_model, example_batch))
    assert built is salvaged and built.fallbacks == [Step("jit", "trace failed")]


def test_an_entry_without_a_fallback_may_not_be_unavailable(monkeypatch, tiny_model, example_batch):
    eager = ModeSpec("eager", "fp32")
    monkeypatch.setitem(PATHS, eager, dataclasses.replace(PATHS[eager], attempt=_unavailable(Step("eager", "?"))))
    with pytest.raises(RuntimeError, match="declares no fallback"):
        PATHS[eager].build(_request(tiny_model, example_batch))
    with pytest.raises(ValueError, match="at least one Step"):
        PathUnavailable()


class _Untraceable(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return {"length": input_ids.shape[1]}  # no tensor out: tracing fails


def test_builders_signal_unavailable_instead_of_building_the_next_path(tiny_model, example_batch):
    with pytest.raises(PathUnavailable) as raised:
        float_builders.jit_builder("fp32")(_request(_Untraceable(), example_batch))
    assert raised.value.kind == TRACE_FAILED and raised.value.steps[0].step == "jit"
    with pytest.raises(PathUnavailable) as raised:
        int8_builders.ipex_int8(_request(tiny_model, example_batch))
    assert raised.value.steps == (Step("ipex:int8", "IPEX's int8 kernels run only inside its TorchScript graph: "
                                                    "use mode ipex+jit"),)
    # through the table, the same request falls back as declared
    built = PATHS[ModeSpec("ipex", "int8")].build(_request(tiny_model, example_batch))
    assert (built.mode, built.precision) == ("eager", "int8") and built.fallbacks[0].step == "ipex:int8"


def test_the_builders_know_nothing_of_the_table():
    """A builder cannot build another path: it imports neither the table nor the registry, nor calls them."""
    for module in (float_builders, int8_builders):
        nodes = list(ast.walk(ast.parse(Path(module.__file__).read_text())))
        imported = {node.module for node in nodes if isinstance(node, ast.ImportFrom)}
        assert not imported & {"cpu_inference_helpers.paths.table", "cpu_inference_helpers.registry"}, imported
        used = {node.id for node in nodes if isinstance(node, ast.Name)}
        assert not used & {"PATHS", "path_for", "build_path"}, module.__name__


#: Where the precision checks are defined or measured; everything else must leave them to `precision_policy`.
_PRECISION_CHECK_HOMES = {"precision_policy.py", "bf32_check.py", "precision.py"}


def test_precision_fallbacks_come_from_the_precision_policy_only():
    package = Path(cpu_inference_helpers.__path__[0])
    for path in package.rglob("*.py"):
        if path.name in _PRECISION_CHECK_HOMES:
            continue
        source = path.read_text()
        assert 'Step("precision"' not in source, path
        calls = re.search(r"\b(resolve_precision|bf32_fallback_reason|bf32_fallback_reason_for_path)\(", source)
        assert not calls, (path, calls)
    policy = Path(precision_policy.__file__).read_text()
    assert 'Step("precision"' in policy and "bf32_fallback_reason_for_path(" in policy


def test_the_front_door_takes_its_precision_fallbacks_from_the_policy(monkeypatch, tiny_model, example_batch):
    monkeypatch.setattr(precision_policy, "bf32_fallback_reason_for_path",
                        lambda mode, *args: f"stub: no bf32 on {mode}")
    ready = prepare_for_inference(tiny_model, example_batch, mode="eager", precision="bf32")
    assert ready.record.ran_as == "eager" and ready.record.fallbacks == [Step("precision", "stub: no bf32 on eager")]

    skylake = cpuinfo_capabilities("intel_skylake")  # no native bf16
    precision, steps = precision_policy.request_precision("bf16", skylake, allow_emulated_bf16=False)
    assert precision == "fp32" and [step.step for step in steps] == ["precision"]
    assert precision_policy.request_precision("bf16", skylake, allow_emulated_bf16=True) == ("bf16", [])
    ready = prepare_for_inference(tiny_model, example_batch, mode="eager", precision="bf16", capabilities=skylake)
    assert ready.record.fallbacks == steps
