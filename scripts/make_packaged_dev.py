"""Build the packaged full SQuAD v1.1 dev set from the shared copy, restoring removed answer texts.

    python scripts/make_packaged_dev.py ../shared/data/squaddev_v1.1.json.xz

The source copy (from the PyPI sdist bigbench==1.0.0) lacks 46 gold answers of 28 questions,
listed in squaddev_v1.1_removed.json.xz beside it. The official EM/F1 read answer texts only,
so every removed text of a question still in the file is put back; its `answer_start` is the
first occurrence in the context, or -1 where the text does not occur there verbatim.
The result is written compactly, xz-compressed, into the package.
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "cpu_inference_helpers" / "data" / "squad_v1.1_dev.json.xz"


def main(source: str) -> None:
    source_path = Path(source)
    with lzma.open(source_path, "rt", encoding="utf-8") as handle:
        dataset = json.load(handle)
    with lzma.open(source_path.with_name("squaddev_v1.1_removed.json.xz"), "rt", encoding="utf-8") as handle:
        removed = json.load(handle)["removed"]
    restored = questions = 0
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                questions += 1
                for text in removed.get(qa["id"], []):
                    qa["answers"].append({"text": text, "answer_start": paragraph["context"].find(text)})
                    restored += 1
    packed = {"version": dataset.get("version", "1.1"), "data": dataset["data"]}
    with lzma.open(OUTPUT, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as handle:
        json.dump(packed, handle, ensure_ascii=False, separators=(",", ":"))
    print(f"{OUTPUT}: {questions} questions, {restored} answer texts restored")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/squaddev_v1.1.json.xz")
