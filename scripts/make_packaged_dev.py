"""Package the official SQuAD v1.1 dev set (10,570 questions) as the offline default evaluation data.

    python scripts/make_packaged_dev.py ../shared/data/squad/dev-v1.1.json.xz

The source is the official `dev-v1.1.json`, xz-compressed (see ../shared/data/README.md). Its
uncompressed md5 is checked against the value the SQuAD authors' file has (the one torchtext,
ParlAI and PaddleNLP check) and the compressed file is copied into the package unchanged, so the
packaged file decompresses to the published bytes.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import sys
from pathlib import Path

from cpu_inference_helpers.qa.data import OFFICIAL_DEV_MD5, default_dataset_path

OUTPUT = default_dataset_path()


def main(source: str) -> int:
    source_path = Path(source)
    with lzma.open(source_path, "rb") as handle:
        digest = hashlib.md5(handle.read()).hexdigest()
    if digest != OFFICIAL_DEV_MD5:
        print(f"{source_path} decompresses to md5 {digest}, not the official {OFFICIAL_DEV_MD5}", file=sys.stderr)
        return 1
    shutil.copyfile(source_path, OUTPUT)
    print(f"{OUTPUT}: the official SQuAD v1.1 dev set (md5 {digest} uncompressed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/squad/dev-v1.1.json.xz"))
