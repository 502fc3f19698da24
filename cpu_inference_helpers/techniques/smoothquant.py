"""SmoothQuant for any quantizer: move activation outliers into the weights before static int8.

    smoothed = smooth_linear_inputs(model, calibration_batches, alpha=0.5)   # same outputs, other ranges

Static int8 gives each Linear's input one range (per tensor), fixed on calibration data; a few input
channels with large values (transformers have them after layer norm) then stretch that range and every
other channel loses its resolution. SmoothQuant (Xiao et al., 2023) divides input channel j by

    s_j = max|X_j| ** alpha / max|W_:,j| ** (1 - alpha)

and multiplies the weight's column j by s_j: the product is unchanged, the input's channels come closer
together, the weight (quantized per output channel) absorbs what they lost. IPEX does this inside its
quantizer (`ipex.quantization.get_smooth_quant_qconfig_mapping`); PT2E's X86InductorQuantizer does not,
so `smooth_linear_inputs` rewrites the model before export: each `nn.Linear` becomes a `SmoothedLinear`
that multiplies its input by 1 / s (a pointwise op Inductor fuses into the quantization before the int8
kernel) and holds the scaled weight.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch

Batch = Mapping[str, torch.Tensor]

#: Below this a channel's range or a column's weight magnitude counts as zero (no division by it).
_FLOOR = 1e-5


class SmoothedLinear(torch.nn.Module):
    """`linear` (its weight columns multiplied by `scales`) applied to its input divided by `scales`."""

    def __init__(self, linear: torch.nn.Linear, scales: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("inverse_scales", (1.0 / scales).to(linear.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scales)


def input_channel_ranges(model: torch.nn.Module, batches: Iterable[Batch]) -> dict[str, torch.Tensor]:
    """max |x_j| per input channel j of every `nn.Linear` of `model` (by module name) over `batches`."""
    return _observe_linear_inputs(model, batches)[0]


def _observe_linear_inputs(model: torch.nn.Module, batches: Iterable[Batch]
                           ) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """Per-channel input ranges of every `nn.Linear`, and the Linear layers grouped by the input tensor they
    share (a transformer's query, key and value read one tensor), in call order."""
    ranges: dict[str, torch.Tensor] = {}
    groups: dict[str, list[str]] = {}  # first reader's name -> every reader of the same tensor
    readers: dict[int, str] = {}  # id of an input tensor seen in the current batch -> its first reader
    alive: list[torch.Tensor] = []  # keeps those tensors alive so that their ids stay unique within a batch

    def observer(name: str):
        def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            seen = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0).float()
            ranges[name] = torch.maximum(ranges[name], seen) if name in ranges else seen
            first = readers.setdefault(id(x), name)
            alive.append(x)
            if not any(name in members for members in groups.values()):
                groups.setdefault(first, []).append(name)
        return record

    hooks = [module.register_forward_pre_hook(observer(name)) for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear)]
    try:
        with torch.no_grad():
            for batch in batches:
                model(**batch)
                readers.clear()
                alive.clear()
    finally:
        for hook in hooks:
            hook.remove()
    return ranges, list(groups.values())


def smoothing_scales(input_range: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's per-input-channel scales s_j = max|X_j|^alpha / max|W_:,j|^(1-alpha) (1 where either is 0).

    `weight`: (out, in); for Linear layers that read one input, their weights stacked along `out`.
    """
    weight_range = weight.detach().abs().amax(dim=0).float()
    scales = input_range.clamp(min=_FLOOR) ** alpha / weight_range.clamp(min=_FLOOR) ** (1 - alpha)
    dead = (input_range < _FLOOR) | (weight_range < _FLOOR)
    return torch.where(dead, torch.ones_like(scales), scales)


def smooth_linear_inputs(model: torch.nn.Module, batches: Iterable[Batch], alpha: float) -> torch.nn.Module:
    """A copy of `model` whose every `nn.Linear` is a `SmoothedLinear` with scales measured on `batches`.

    Linear layers that read the same tensor (query, key, value) share one set of scales, computed from
    their stacked weights as IPEX does, and one scale tensor: their divided inputs are then one node of the
    exported graph, quantized once. The copy computes what `model` computes (up to float rounding); only
    the ranges a quantizer then sees change. A ValueError for alpha outside [0, 1] or no batch, before any work.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"SmoothQuant's alpha must lie in [0, 1], not {alpha}")
    batches = list(batches)
    if not batches:
        raise ValueError("SmoothQuant needs calibration batches to measure the activation ranges on")
    smoothed = copy.deepcopy(model).eval()
    ranges, groups = _observe_linear_inputs(smoothed, batches)
    for names in groups:
        linears = [smoothed.get_submodule(name) for name in names]
        stacked = torch.cat([linear.weight.detach() for linear in linears])
        scales = smoothing_scales(ranges[names[0]], stacked, alpha)
        shared = None
        for name, linear in zip(names, linears, strict=True):
            with torch.no_grad():
                linear.weight.mul_(scales.to(linear.weight.dtype))
            wrapper = SmoothedLinear(linear, scales)
            if shared is None:
                shared = wrapper.inverse_scales
            wrapper.inverse_scales = shared  # one tensor for the group: one divided input in the graph
            parent_name, _, child = name.rpartition(".")
            setattr(smoothed.get_submodule(parent_name), child, wrapper)
    return smoothed
