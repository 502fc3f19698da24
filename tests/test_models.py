import logging

import pytest
import torch

from cpu_inference_helpers.models import (
    bert_uncased_vocab_path,
    build_random_qa_model,
    load_qa_model_and_tokenizer,
)


def test_offline_vocabulary_is_bert_base_uncased(tokenizer):
    assert len(bert_uncased_vocab_path().read_text().splitlines()) == 30522
    assert tokenizer("Hello World")["input_ids"] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    assert tokenizer.is_fast and tokenizer.model_max_length == 512
    # the vocabulary package's sentence-embedding defaults (truncate/pad to 128) must not leak in
    assert len(tokenizer("word " * 300)["input_ids"]) == 302


def test_random_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_random_qa_model("random-bert-tiny", seed=3)
    b = build_random_qa_model("random-bert-tiny", seed=3)
    c = build_random_qa_model("random-bert-tiny", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (m.qa_outputs.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_random_bert_base_has_bert_base_shape():
    config = build_random_qa_model("random-bert-base").config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)


def test_attention_implementation_is_applied():
    model = build_random_qa_model("random-bert-tiny", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"


def test_local_folder_loads_through_from_pretrained(tmp_path, tiny_model, tokenizer, example_batch):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_qa_model_and_tokenizer(str(tmp_path))
    assert not loaded.random_weights and loaded.tokenizer.is_fast
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**example_batch).start_logits, tiny_model(**example_batch).start_logits)


def test_missing_model_gives_an_actionable_error(tmp_path):
    with pytest.raises(OSError, match="minilm-squad"):
        load_qa_model_and_tokenizer(str(tmp_path / "no-such-model"))


def test_unknown_offline_name():
    with pytest.raises(ValueError, match="choose one of"):
        build_random_qa_model("random-gpt")


def test_the_random_weights_warning_comes_once_per_process(monkeypatch, caplog):
    from cpu_inference_helpers import models

    monkeypatch.setattr(models, "_WARNED_RANDOM", set())
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers.models"):
        for _ in range(3):
            assert load_qa_model_and_tokenizer("random-bert-tiny").random_weights
    assert caplog.text.count("has random weights") == 1


def test_the_retired_checkpoint_name_says_what_replaced_it():
    with pytest.raises(OSError, match="replaced .* by minilm-squad"):
        load_qa_model_and_tokenizer("minilm-squadshifts")
