"""Float8 (e4m3) matrix products for the encoder's linear layers.

Why: the encoder is compute-bound (~2.3 TFLOP per 30 s window for large-v3) and an H100's
float8 tensor cores run at twice its bf16 rate. Each weight row (output channel) and each
activation row (frame) gets its own scale, so a loud frame or channel does not flatten the
resolution of the others. On CUDA the product is ``torch._scaled_mm`` (float32 accumulation);
elsewhere the same quantized values are multiplied in float32, so a CPU run measures what the
quantization costs in WER (``bench/bench_wer.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from engines.torch_attention import FP8, FP8_MAX


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) -> float8 values and float32 scales (M,), one per row."""
    scale = x.abs().amax(dim=-1).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale[:, None]).to(FP8), scale


class Fp8Linear(nn.Module):
    """``nn.Linear`` with float8 weights (per output channel) and activations (per row)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", scale)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, scale = quantize_rows(x.reshape(-1, x.shape[-1]))
        if x.is_cuda:
            y = torch._scaled_mm(rows, self.weight.t(), scale_a=scale[:, None],
                                 scale_b=self.weight_scale[None, :], out_dtype=x.dtype)
        else:
            y = ((rows.float() * scale[:, None]) @ (self.weight.float() * self.weight_scale[:, None]).T).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], -1)


def encoder_to_fp8(encoder: nn.Module) -> None:
    """Swap every encoder layer's attention projections and feed-forward matrices for
    ``Fp8Linear`` (the convolutions, layer norms and attention itself stay as they are)."""
    for layer in encoder.layers:
        attn = layer.self_attn
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(attn, name, Fp8Linear(getattr(attn, name)))
        layer.fc1, layer.fc2 = Fp8Linear(layer.fc1), Fp8Linear(layer.fc2)
