"""Benchmark every inference path against eager fp32, the peers and the hardware limit, in one run.

    python -m cpu_inference_helpers.bench                        # bert-base, seq 384/128, batch 1/8
    python -m cpu_inference_helpers.bench --shapes 384x1 --repeats 20

For each input shape and precision group (fp32 and bf32; bf16; int8: each with its peers), every
path is prepared first (optimisation, tracing, compilation, export: reported as set-up), then the
group's paths are timed round-robin beside eager fp32 in one process (`interleaved_latency`), so
the ratios hold on a shared, noisy machine. Paths (`paths.default_paths`): eager fp32
with SDPA and with eager attention, TorchScript jit+freeze, IPEX (both fp32 kernel
selections), IPEX+jit (with SDPA and with eager attention), torch.compile (Inductor with freezing; at the
shapes kernel_choice measures faster, and at static and at dynamic shapes), torch.export + AOTInductor
(`export`), their bf16, bf32 and int8 variants, the helpers' `auto` choice, and the peers ONNX Runtime
and OpenVINO when installed
(`pip install -e '.[peers]'`). The machine's matmul peak per dtype (the roofline) is
measured in the same run; each path is reported as a speed-up over eager fp32 and as the
fraction of that roofline its achieved FLOP rate reaches.

Layout: `paths` (what is benchmarked), `runner` (preparing and timing the paths of one shape, one
process per shape and group), `report` (text, Markdown, plot), `peers` (ONNX Runtime, OpenVINO), `roofline`
(the matmul peak and the model's FLOPs), `profiling` (where the time goes); `__main__` is the CLI.
"""
