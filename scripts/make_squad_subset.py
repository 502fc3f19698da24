"""Regenerate the packaged SQuAD v1.1 dev subset from a full dev file.

    python scripts/make_squad_subset.py ../shared/data/squad/dev-v1.1.json.xz

Takes whole paragraphs round-robin across all articles until at least TARGET questions,
so every topic of the dev set is represented. Given an incomplete copy of the dev set with a
squaddev_v1.1_removed.json.xz beside it (the bigbench copy), it leaves out the questions whose
gold answers that copy lacks.
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

TARGET = 300
OUTPUT = Path(__file__).resolve().parents[1] / "cpu_inference_helpers" / "data" / "squad_v1.1_dev_subset.json"


def main(source: str) -> None:
    source_path = Path(source)
    dataset = json.load(lzma.open(source_path) if source_path.suffix == ".xz" else source_path.open())
    removed_path = source_path.with_name("squaddev_v1.1_removed.json.xz")
    incomplete = set(json.load(lzma.open(removed_path))["removed"]) if removed_path.exists() else set()
    articles = [{"title": a["title"], "paragraphs": []} for a in dataset["data"]]
    total, depth = 0, 0
    while total < TARGET:
        for article, chosen in zip(dataset["data"], articles, strict=True):
            if depth >= len(article["paragraphs"]) or total >= TARGET:
                continue
            paragraph = article["paragraphs"][depth]
            qas = [qa for qa in paragraph["qas"] if qa["id"] not in incomplete and qa["answers"]]
            if qas:
                chosen["paragraphs"].append({"context": paragraph["context"], "qas": qas})
                total += len(qas)
        depth += 1
    subset = {"version": dataset.get("version", "1.1"), "data": [a for a in articles if a["paragraphs"]]}
    OUTPUT.write_text(json.dumps(subset, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {total} questions from {len(subset['data'])} articles to {OUTPUT}")


if __name__ == "__main__":
    main(sys.argv[1])
