"""Loading SQuAD-format question answering data: packaged default, local files, or the Hub.

Accepted local layouts (plain, `.gz` or `.xz` compressed):
- the official nested layout: {"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]};
- flattened records, as the Hub's `squad` dataset and run_qa.py's `--validation_file` use:
  a JSON list, {"data": [...]}, or JSON lines, each record with id, context, question and
  answers ({"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import shutil
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cpu_inference_helpers.infra.cli import DataclassArgumentParser
from cpu_inference_helpers.infra.cli_logging import MESSAGES_ONLY
from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.output_files import atomic_file

logger = logging.getLogger(__name__)

OFFICIAL_DEV_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"
OFFICIAL_DEV_QUESTIONS = 10570
#: md5 of the official dev-v1.1.json (uncompressed): the packaged default decompresses to exactly that file.
OFFICIAL_DEV_MD5 = "3e85deb501d4e538b6bc56f786231552"
DEFAULT_DEV = "squad_v1.1_dev.json.xz"
DEV_SUBSET = "squad_v1.1_dev_subset.json"


class SquadFormatError(ValueError):
    """A data file that is not valid SQuAD-format data; the message names the file and the place."""


@dataclass(frozen=True)
class SquadExample:
    """One question with its context and gold answers."""

    id: str
    question: str
    context: str
    answers: dict[str, list] = field(default_factory=lambda: {"text": [], "answer_start": []})
    title: str = ""


def default_dataset_path() -> Path:
    """The packaged official SQuAD v1.1 dev set (10,570 questions, CC BY-SA 4.0): the offline default."""
    return Path(str(resources.files("cpu_inference_helpers") / "data" / DEFAULT_DEV))


def subset_dataset_path() -> Path:
    """The packaged 304-question SQuAD v1.1 dev subset (paragraphs round-robin over 43 articles), for quick runs."""
    return Path(str(resources.files("cpu_inference_helpers") / "data" / DEV_SUBSET))


def _open_text(path: Path):
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _read_json_or_lines(path: Path) -> Any:
    """Parse a file as one JSON document, or as JSON lines when that is what it is.

    JSON lines is tried only when the whole file is not one JSON document but its first
    non-empty line is one on its own; otherwise the whole-document error, with its line and
    column, is reported (a pretty-printed file with a stray comma is not JSON lines).
    """
    with _open_text(path) as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole_error:
        lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        first_line_is_a_document = False
        if lines:
            try:
                json.loads(lines[0][1])
                first_line_is_a_document = True
            except json.JSONDecodeError:
                pass
        if not first_line_is_a_document:
            raise SquadFormatError(
                f"{path}: not valid JSON ({whole_error.msg} at line {whole_error.lineno}, "
                f"column {whole_error.colno})"
            ) from None
        records = []
        for number, line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise SquadFormatError(
                    f"{path}: JSON lines: line {number} is not valid JSON ({error.msg} at column {error.colno})"
                ) from None
        return records


def _require(record: Any, key: str, kind: type | tuple[type, ...], where: str, source: str) -> Any:
    if not isinstance(record, Mapping):
        raise SquadFormatError(f"{source}: {where} should be an object, found {type(record).__name__}")
    if key not in record:
        raise SquadFormatError(f"{source}: {where} has no {key!r} field")
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SquadFormatError(f"{source}: {where}.{key} should be {names}, found {type(value).__name__}")
    return value


def _normalise_answers(answers: Any, where: str, source: str) -> dict[str, list]:
    if isinstance(answers, Mapping):
        texts = _require(answers, "text", list, f"{where}.answers", source)
        starts = _require(answers, "answer_start", list, f"{where}.answers", source)
        if len(texts) != len(starts):
            raise SquadFormatError(f"{source}: {where}.answers has {len(texts)} texts but {len(starts)} starts")
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(answers, list):
        pairs = [
            (
                _require(a, "text", str, f"{where}.answers[{i}]", source),
                _require(a, "answer_start", int, f"{where}.answers[{i}]", source),
            )
            for i, a in enumerate(answers)
        ]
    else:
        raise SquadFormatError(f"{source}: {where}.answers should be a list or an object with text/answer_start")
    for i, (text, start) in enumerate(pairs):
        if not isinstance(text, str) or not isinstance(start, int):
            raise SquadFormatError(f"{source}: {where}.answers[{i}] needs a string text and an integer answer_start")
    return {"text": [t for t, _ in pairs], "answer_start": [s for _, s in pairs]}


def _from_nested(articles: list, source: str) -> list[SquadExample]:
    examples = []
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        title = article.get("title", "") if isinstance(article, Mapping) else ""
        for p, paragraph in enumerate(_require(article, "paragraphs", list, where, source)):
            p_where = f"{where}.paragraphs[{p}]"
            context = _require(paragraph, "context", str, p_where, source)
            for q, qa in enumerate(_require(paragraph, "qas", list, p_where, source)):
                q_where = f"{p_where}.qas[{q}]"
                examples.append(
                    SquadExample(
                        id=str(_require(qa, "id", (str, int), q_where, source)),
                        question=_require(qa, "question", str, q_where, source),
                        context=context,
                        answers=_normalise_answers(qa.get("answers", []), q_where, source),
                        title=title,
                    )
                )
    return examples


def _from_flat(records: Iterable[Any], source: str, prefix: str = "") -> list[SquadExample]:
    examples = []
    for i, record in enumerate(records):
        where = f"{prefix}[{i}]"
        examples.append(
            SquadExample(
                id=str(_require(record, "id", (str, int), where, source)),
                question=_require(record, "question", str, where, source),
                context=_require(record, "context", str, where, source),
                answers=_normalise_answers(record.get("answers", []), where, source),
                title=str(record.get("title", "")),
            )
        )
    return examples


def parse_squad(data: Any, source: str = "<data>") -> list[SquadExample]:
    """Turn parsed JSON in any accepted layout into examples, or raise `SquadFormatError`."""
    if isinstance(data, Mapping) and "data" not in data and {"question", "context"} <= set(data):
        data = [data]  # a JSON-lines file with a single record parses as one object
    records = data.get("data") if isinstance(data, Mapping) else data
    if isinstance(data, Mapping) and records is None:
        raise SquadFormatError(f"{source}: a JSON object needs a 'data' list (found keys {sorted(data)[:5]})")
    if not isinstance(records, list):
        raise SquadFormatError(f"{source}: expected a list of articles or records, found {type(records).__name__}")
    if not records:
        raise SquadFormatError(f"{source}: contains no questions")
    first = records[0]
    if isinstance(first, Mapping) and "paragraphs" in first:
        examples = _from_nested(records, source)
    else:
        examples = _from_flat(records, source, prefix="data" if isinstance(data, Mapping) else "")
    if not examples:
        raise SquadFormatError(f"{source}: contains no questions")
    duplicates = len(examples) - len({e.id for e in examples})
    if duplicates:
        raise SquadFormatError(f"{source}: {duplicates} question ids occur more than once")
    return examples


def require_scorable(examples: Sequence[SquadExample], source: str) -> None:
    """Raise `SquadFormatError` when no example has a gold answer: EM/F1 would have nothing to score.

    Called before the evaluation, so a file of unanswerable questions (SQuAD v2 style) or one
    without `answers` is refused at once rather than after the whole run.
    """
    if not any(example.answers["text"] for example in examples):
        raise SquadFormatError(
            f"{source}: none of the {len(examples)} questions has a gold answer, so EM/F1 cannot be computed. "
            "Give each question answers ({'text': [...], 'answer_start': [...]}); SQuAD v2's unanswerable "
            "questions are not supported"
        )


def load_squad_file(path: str | Path) -> list[SquadExample]:
    """Load a local SQuAD-format file (see the module docstring for the accepted layouts)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"validation file not found: {path}")
    return parse_squad(_read_json_or_lines(path), str(path))


def load_hub_dataset(name: str, config: str | None = None, split: str = "validation") -> list[SquadExample]:
    """Load a SQuAD-format dataset through `datasets.load_dataset` (needs the Hub or its cache, and `datasets`)."""
    try:
        import datasets
    except ImportError:
        raise RuntimeError("--dataset_name needs the datasets package: pip install 'cpu-inference-tutorial[hf]' "
                           "(or pass --validation_file, or omit both for the packaged offline dev set)") from None

    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # connection, offline mode, missing split: all mean "not available here"
        raise RuntimeError(
            f"could not load the dataset {name!r} ({error_summary(error)}). Without Hub access, pass "
            "--validation_file with a SQuAD JSON file, or omit both to use the packaged offline subset"
        ) from error
    return parse_squad(list(dataset), f"{name}[{split}]")


def load_examples(
    dataset_name: str | None = None, validation_file: str | Path | None = None, dataset_config: str | None = None
) -> tuple[list[SquadExample], str]:
    """Load evaluation examples from exactly one source; returns (examples, description of the source)."""
    if dataset_name and validation_file:
        raise ValueError("pass either --dataset_name or --validation_file, not both")
    if validation_file:
        return load_squad_file(validation_file), str(validation_file)
    if dataset_name:
        return load_hub_dataset(dataset_name, dataset_config), f"{dataset_name} (datasets)"
    path = default_dataset_path()
    return load_squad_file(path), f"packaged SQuAD v1.1 dev set ({path.name})"


def fetch_squad_dev(destination: str | Path, url: str = OFFICIAL_DEV_URL, sha256: str | None = None) -> Path:
    """Download the full SQuAD v1.1 dev set to `destination` and check that it parses completely."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(destination) as temporary_path:  # a failed download or check leaves nothing behind
        with urllib.request.urlopen(url, timeout=60) as response, temporary_path.open("wb") as temporary:
            shutil.copyfileobj(response, temporary)
        digest = hashlib.sha256(temporary_path.read_bytes()).hexdigest()
        if sha256 and digest != sha256:
            raise SquadFormatError(f"{url}: sha256 {digest} does not match the expected {sha256}")
        examples = load_squad_file(temporary_path)
    logger.info("downloaded %d questions to %s (sha256 %s)", len(examples), destination, digest)
    return destination


@dataclass
class FetchFlags:
    """Where `qa.data fetch` downloads the full dev set from, and where it writes it."""

    to: str = field(default="data/dev-v1.1.json", metadata={"help": "where to write it (default: %(default)s)"})
    url: str = field(default=OFFICIAL_DEV_URL, metadata={"help": "where to download it from (default: %(default)s)"})


def main(argv: list[str] | None = None) -> int:
    """`python -m cpu_inference_helpers.qa.data fetch [--to PATH]` downloads the full dev set."""
    parser = DataclassArgumentParser(prog="python -m cpu_inference_helpers.qa.data")
    parser.add_command("fetch", FetchFlags, help_text="download the full SQuAD v1.1 dev set")
    (flags,) = parser.parse_dataclasses(argv)
    return parser.run(lambda: fetch_and_report(flags), log=MESSAGES_ONLY, errors=())


def fetch_and_report(flags: FetchFlags) -> int:
    """Download the dev set and say how to use it."""
    path = fetch_squad_dev(flags.to, flags.url)
    print(f"{path}: use it with --validation_file {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
