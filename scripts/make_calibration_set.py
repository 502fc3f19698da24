"""Write the packaged int8 calibration set: 256 questions of SQuADShifts' new_wiki split (training-side data).

    python scripts/make_calibration_set.py ../shared/data/squadshifts/new_wiki_v1.0.json.xz

Paragraphs are taken round-robin over the articles (each paragraph with all its questions) until 256
questions are in; the layout is SQuAD's nested one, written compactly and xz-compressed. No text is edited.
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

QUESTIONS = 256
DESTINATION = Path(__file__).resolve().parents[1] / "cpu_inference_helpers" / "data" / "squadshifts_calibration.json.xz"


def main(source: str) -> int:
    articles = json.loads(lzma.open(source, "rt", encoding="utf-8").read())["data"]
    chosen: dict[int, list] = {}
    count, depth = 0, 0
    while count < QUESTIONS:
        progressed = False
        for index, article in enumerate(articles):
            if depth < len(article["paragraphs"]) and count < QUESTIONS:
                paragraph = article["paragraphs"][depth]
                chosen.setdefault(index, []).append(paragraph)
                count += len(paragraph["qas"])
                progressed = True
        if not progressed:
            break
        depth += 1
    data = [{"title": articles[i]["title"], "paragraphs": paragraphs} for i, paragraphs in sorted(chosen.items())]
    payload = json.dumps({"version": "squadshifts_new_wiki_v1.0 calibration subset", "data": data},
                         ensure_ascii=False, separators=(",", ":"))
    with lzma.open(DESTINATION, "wt", encoding="utf-8", preset=9) as handle:
        handle.write(payload)
    print(f"wrote {DESTINATION}: {count} questions, {len(data)} articles, {DESTINATION.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
