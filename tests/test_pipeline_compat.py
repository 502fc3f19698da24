"""A prepared QA model works where users already are: `transformers.pipeline("question-answering", model=ready)`."""

import pytest
import transformers
from conftest import requires_ipex
from transformers.pipelines import SUPPORTED_TASKS

from cpu_inference_helpers.models import load_qa_model_and_tokenizer
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.qa.data import load_examples
from cpu_inference_helpers.registry import inductor_compiler_available

HAS_QA_PIPELINE = "question-answering" in SUPPORTED_TASKS
QUESTIONS = 6


def _questions():
    examples, _ = load_examples()
    return [{"question": example.question, "context": example.context} for example in examples[:QUESTIONS]]


def test_the_stack_says_whether_it_has_an_extractive_qa_pipeline():
    """transformers 5 removed the extractive "question-answering" pipeline (it points to text-generation);
    4.x has it. If a later release brings it back, this test says so and the tests below run there."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        assert not HAS_QA_PIPELINE
        with pytest.raises(Exception, match="text-generation"):
            transformers.pipeline("question-answering")
    else:
        assert HAS_QA_PIPELINE


@pytest.mark.skipif(not HAS_QA_PIPELINE, reason=f"transformers {transformers.__version__} has no "
                                                 "question-answering pipeline")
@pytest.mark.parametrize(("mode", "precision"), [
    ("jit", "fp32"),
    pytest.param("ipex+jit", "fp32", marks=requires_ipex),
    pytest.param("compile", "fp32",
                 marks=pytest.mark.skipif(not inductor_compiler_available(), reason="no C++ compiler")),
    ("eager", "int8"),
])
def test_a_prepared_model_answers_in_a_transformers_pipeline(mode, precision):
    loaded = load_qa_model_and_tokenizer()
    questions = _questions()
    eager_pipeline = transformers.pipeline("question-answering", model=loaded.model, tokenizer=loaded.tokenizer)
    asked = {"question": [q["question"] for q in questions], "context": [q["context"] for q in questions]}
    expected = [answer["answer"] for answer in eager_pipeline(**asked)]
    example = loaded.tokenizer([questions[0]["question"]], [questions[0]["context"]], truncation="only_second",
                               max_length=384, padding="max_length", return_tensors="pt")
    options = {"dynamic_shapes": True} if mode == "compile" else {}  # the pipeline pads to each question's length
    ready = prepare_for_inference(loaded.model, dict(example), mode=mode, precision=precision, **options)
    assert ready.record.ran_as == (mode if precision == "fp32" else f"{mode}:{precision}"), ready.record.summary()
    prepared_pipeline = transformers.pipeline("question-answering", model=ready, tokenizer=loaded.tokenizer)
    answers = [answer["answer"] for answer in prepared_pipeline(**asked)]
    if precision == "fp32":
        assert answers == expected
    else:  # int8 moves logits: most answers stay
        assert sum(a == e for a, e in zip(answers, expected, strict=True)) >= QUESTIONS - 2, (answers, expected)
