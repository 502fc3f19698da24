import gzip
import hashlib
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from cpu_inference_helpers.qa.data import (
    OFFICIAL_DEV_MD5,
    OFFICIAL_DEV_QUESTIONS,
    SquadFormatError,
    default_dataset_path,
    fetch_squad_dev,
    load_examples,
    load_hub_dataset,
    load_squad_file,
    parse_squad,
    require_scorable,
    subset_dataset_path,
)

pytestmark = pytest.mark.stack_independent  # run on the legacy stack only (pyproject's markers)

NESTED = {
    "version": "1.1",
    "data": [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": "The Rhine flows through Basel and Cologne.",
                    "qas": [
                        {"id": "q1", "question": "Which river?", "answers": [{"text": "Rhine", "answer_start": 4}]},
                        {"id": "q2", "question": "Which city?",
                         "answers": [{"text": "Basel", "answer_start": 24}, {"text": "Cologne", "answer_start": 34}]},
                    ],
                }
            ],
        }
    ],
}


def flat_records():
    return [
        {"id": e.id, "title": e.title, "context": e.context, "question": e.question, "answers": e.answers}
        for e in parse_squad(NESTED)
    ]


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_packaged_subset_is_the_official_dev_set_in_small():
    examples = load_squad_file(subset_dataset_path())
    assert len(examples) == 304 and len({e.title for e in examples}) == 43
    official = {example.id: example for example in load_examples()[0]}
    for example in examples:
        assert example == official[example.id]  # same question, context, gold answers and title
        for text, start in zip(example.answers["text"], example.answers["answer_start"], strict=True):
            assert example.context[start : start + len(text)] == text


def test_default_source_is_the_official_dev_set_byte_for_byte():
    with lzma.open(default_dataset_path(), "rb") as handle:
        assert hashlib.md5(handle.read()).hexdigest() == OFFICIAL_DEV_MD5
    examples, source = load_examples()
    assert len(examples) == OFFICIAL_DEV_QUESTIONS == 10570
    assert "packaged" in source and default_dataset_path().name in source
    assert len({e.title for e in examples}) == 48 and all(e.answers["text"] for e in examples)
    for example in examples:
        for text, start in zip(example.answers["text"], example.answers["answer_start"], strict=True):
            assert example.context[start : start + len(text)] == text


def _training_files() -> list[Path]:
    files = sorted((SHARED_DATA / "squadshifts").glob("*.json.xz")) + sorted((SHARED_DATA / "squad").glob("train*"))
    if len(files) < 5:
        pytest.skip(f"the training files (SQuADShifts and SQuAD v1.1 train) are not all in {SHARED_DATA}")
    return files


@pytest.mark.parametrize("training_file", range(5), ids=["squadshifts-0", "squadshifts-1", "squadshifts-2",
                                                         "squadshifts-3", "squad-train"])
def test_packaged_dev_set_shares_no_article_with_the_training_data(training_file):
    dev = load_examples()[0]
    path = _training_files()[training_file]
    train = load_squad_file(path)
    assert not {example.id for example in dev} & {example.id for example in train}, path.name
    assert not {example.context for example in dev} & {example.context for example in train}, path.name
    if path.parent.name == "squad":  # Wikipedia articles on both sides: no title shared either
        assert not {example.title for example in dev} & {example.title for example in train}, path.name


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.write_text(json.dumps(NESTED)),
        lambda p: p.write_text(json.dumps(flat_records())),
        lambda p: p.write_text(json.dumps({"version": "x", "data": flat_records()})),
        lambda p: p.write_text("\n".join(json.dumps(r) for r in flat_records())),
    ],
    ids=["nested", "flat-list", "flat-data", "json-lines"],
)
def test_every_layout_gives_the_same_examples(tmp_path, write):
    path = tmp_path / "data.json"
    write(path)
    assert load_squad_file(path) == parse_squad(NESTED)


def test_answer_lists_and_compressed_files(tmp_path):
    records = flat_records()
    for record in records:
        record["answers"] = [{"text": t, "answer_start": s}
                             for t, s in zip(record["answers"]["text"], record["answers"]["answer_start"], strict=True)]
    xz_path, gz_path = tmp_path / "d.json.xz", tmp_path / "d.json.gz"
    xz_path.write_bytes(lzma.compress(json.dumps(records).encode()))
    gz_path.write_bytes(gzip.compress(json.dumps(NESTED).encode()))
    assert load_squad_file(xz_path) == load_squad_file(gz_path) == parse_squad(NESTED)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"data": [', "not valid JSON"),
        ('{"version": "1.1"}', "needs a 'data' list"),
        ('{"data": []}', "contains no questions"),
        ('{"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]}',
         r"data\[0\]\.paragraphs\[0\]\.qas\[0\] has no 'question' field"),
        ('{"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}', r"data\[0\]\.paragraphs\[0\] has no 'context'"),
        ('[{"id": "1", "question": "q", "context": 5}]', r"\[0\]\.context should be str, found int"),
        ('[{"id": "1", "question": "q", "context": "c", "answers": {"text": ["a"], "answer_start": []}}]',
         "1 texts but 0 starts"),
        ('[{"id": "1", "question": "q", "context": "c"}, {"id": "1", "question": "q", "context": "c"}]',
         "occur more than once"),
        ('{"a": 1}\n{"b": 2\n', "JSON lines: line 2 is not valid JSON"),
        ('{\n  "data": [\n    {"id": "1", "question": "q", "context": "c"},\n  ]\n}\n',
         "not valid JSON .* at line 4, column 3"),
    ],
    ids=["truncated", "no-data", "empty", "no-question", "no-context", "bad-type", "answer-mismatch",
         "duplicate-id", "bad-json-line", "pretty-printed-stray-comma"],
)
def test_malformed_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SquadFormatError, match=message) as raised:
        load_squad_file(path)
    assert str(path) in str(raised.value)


def test_single_record_json_lines_file_is_accepted(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(flat_records()[0]) + "\n")
    assert load_squad_file(path) == parse_squad(NESTED)[:1]


@pytest.mark.parametrize(
    "answers",
    [None, [], {"text": [], "answer_start": []}],
    ids=["no-answers-field", "empty-list", "squad-v2-unanswerable"],
)
def test_files_without_any_gold_answer_are_refused_before_evaluation(answers):
    record = {"id": "1", "question": "q", "context": "c"}
    if answers is not None:
        record["answers"] = answers
    examples = parse_squad([record, {**record, "id": "2"}])
    with pytest.raises(SquadFormatError, match="none of the 2 questions has a gold answer"):
        require_scorable(examples, "x.json")
    require_scorable(parse_squad(NESTED), "nested")  # answerable questions pass


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="validation file not found"):
        load_squad_file(tmp_path / "nope.json")


def test_both_sources_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        load_examples("squad", "x.json")


def test_datasets_path_loads_a_local_dataset_folder(tmp_path):
    (tmp_path / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in flat_records()))
    assert load_hub_dataset(str(tmp_path)) == parse_squad(NESTED)


def test_hub_dataset_without_network_says_what_to_do():
    code = (
        "from cpu_inference_helpers.qa.data import load_hub_dataset\n"
        "try:\n    load_hub_dataset('squad')\nexcept RuntimeError as e:\n    print('MESSAGE', e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home", "PATH": ""}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "MESSAGE could not load the dataset 'squad'" in completed.stdout, completed.stderr[-2000:]
    assert "--validation_file" in completed.stdout


def test_fetch_downloads_and_validates(tmp_path):
    source = tmp_path / "remote.json"
    source.write_text(json.dumps(NESTED))
    destination = fetch_squad_dev(tmp_path / "out" / "dev.json", url=source.as_uri())
    assert load_squad_file(destination) == parse_squad(NESTED)


def test_fetch_rejects_a_broken_download_and_leaves_nothing(tmp_path):
    source = tmp_path / "remote.json"
    source.write_text("<html>not found</html>")
    destination = tmp_path / "dev.json"
    with pytest.raises(SquadFormatError):
        fetch_squad_dev(destination, url=source.as_uri())
    assert not destination.exists() and not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".partial-*"))


def test_a_failed_download_leaves_no_partial_file(tmp_path):
    """The download itself failing (no such file / host) used to leave its `.part` file behind."""
    destination = tmp_path / "dev.json"
    with pytest.raises(OSError):
        fetch_squad_dev(destination, url=(tmp_path / "missing.json").as_uri())
    assert list(tmp_path.iterdir()) == []
