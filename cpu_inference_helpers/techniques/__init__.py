"""The CPU report (`capabilities`: what this CPU and stack can do) and the building blocks the paths are
made of: TorchScript trace + freeze (`tracing`), `torch.compile` (`compiling`), IPEX (`ipex_support`),
int8 quantizers (`quantization`), attention switching, precision contexts and names, the check against
eager (`parity`), measured kernel choices, graph inspection."""
