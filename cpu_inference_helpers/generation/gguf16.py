"""A 16-bit GGUF file of the same weights: every quantized tensor of the Q4_1 file dequantized (the values
transformers computes) and stored as f16, the metadata copied, so llama.cpp can be measured on the weights the fp32
PyTorch paths run rather than on 5-bit blocks. f16 keeps 11 significant bits: a Q4_1 value (d * q + m, with fp16
d and m) is rounded at most by one part in 2048.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def write_f16_gguf(source: Path, target: Path) -> Path:
    """Write `target`: `source` with its quantized tensors as f16 (f32 and f16 tensors, e.g. norms, kept)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(source))
    architecture = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(target), architecture)
    skipped = (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE)
    for field in reader.fields.values():
        if field.name in skipped or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself, or no longer true
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    kept = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    for tensor in reader.tensors:
        if tensor.tensor_type in kept:
            writer.add_tensor(tensor.name, np.array(tensor.data), raw_dtype=tensor.tensor_type)
        else:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            writer.add_tensor(tensor.name, values.astype(np.float16), raw_dtype=gguf.GGMLQuantizationType.F16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    logger.info("wrote %s (%.0f MB): the weights of %s as f16", target, target.stat().st_size / 1e6, source.name)
    return target
