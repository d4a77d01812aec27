"""Whisper in plain torch, with Hugging Face parameter names, built for batched decoding.

Why not ``WhisperForConditionalGeneration.generate``: its cache classes and generation
internals change between transformers 4.57 (HPC venv) and 5.x (GPU image), and its per-step
overhead dominates at large batch. This module depends on torch alone, loads any HF-named
state dict (HF checkpoints, CT2 ones via ``ct2_weights``), and decodes against *static*
buffers (self- and cross-attention K/V for ``max_batch`` rows), so one decoder step is a fixed
sequence of kernels that a CUDA graph can replay. Attention is ``scaled_dot_product_attention``.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from engines.torch_checkpoint import Dims

N_FFT, HOP, WINDOW_SAMPLES = 400, 160, 480_000


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, D/H)."""
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, t, dh = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(b, t, h * dh))


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.self_attn
        h = self.self_attn_layer_norm(x)
        x = x + a.merge(F.scaled_dot_product_attention(
            a.split(a.q_proj(h)), a.split(a.k_proj(h)), a.split(a.v_proj(h))))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = Attention(d, heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)


class Encoder(nn.Module):
    def __init__(self, dims: Dims) -> None:
        super().__init__()
        d = dims.d_model
        self.conv1 = nn.Conv1d(dims.num_mel_bins, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(dims.max_source_positions, d)
        self.layers = nn.ModuleList(EncoderLayer(d, dims.encoder_attention_heads, dims.encoder_ffn_dim)
                                    for _ in range(dims.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class Decoder(nn.Module):
    def __init__(self, dims: Dims) -> None:
        super().__init__()
        d = dims.d_model
        self.embed_tokens = nn.Embedding(dims.vocab_size, d)
        self.embed_positions = nn.Embedding(dims.max_target_positions, d)
        self.layers = nn.ModuleList(DecoderLayer(d, dims.decoder_attention_heads, dims.decoder_ffn_dim)
                                    for _ in range(dims.decoder_layers))
        self.layer_norm = nn.LayerNorm(d)


class WhisperTorch(nn.Module):
    """Parameters named as in ``WhisperForConditionalGeneration`` (``proj_out`` tied)."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.dims = dims
        self.model = nn.Module()
        self.model.encoder = Encoder(dims)
        self.model.decoder = Decoder(dims)
        self.mel_filters: torch.Tensor | None = None

    def load_hf_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(
            {k: v for k, v in sd.items() if k != "proj_out.weight"}, strict=False)
        if missing or unexpected:
            raise ValueError(f"checkpoint does not match: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel of (B, 480000) zero-padded windows, on the model's device."""
        if self.mel_filters is None or self.mel_filters.device != audio.device:
            from transformers.audio_utils import mel_filter_bank
            fb = mel_filter_bank(num_frequency_bins=1 + N_FFT // 2,
                                 num_mel_filters=self.dims.num_mel_bins, min_frequency=0.0,
                                 max_frequency=8000.0, sampling_rate=16_000, norm="slaney",
                                 mel_scale="slaney")
            self.mel_filters = torch.from_numpy(fb).float().T.contiguous().to(audio.device)
        stft = torch.stft(audio.float(), N_FFT, HOP, window=torch.hann_window(N_FFT, device=audio.device),
                          return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (mel + 4.0) / 4.0


class DecodeState:
    """Static K/V buffers for up to ``max_batch`` rows; rows ``[:n]`` are the live ones.

    Self-attention reads only the first ``t`` cache positions (``t`` from a few length
    buckets), so early steps do not pay for the full context.
    """

    def __init__(self, model: WhisperTorch, max_batch: int, max_len: int,
                 cross_backend: str = "auto") -> None:
        """``cross_backend``: the SDPA kernel for cross-attention (``auto`` lets torch pick;
        ``flash``, ``efficient``, ``cudnn`` or ``math`` force one; it is fixed at graph capture)."""
        d = model.dims
        self.cross_backend = cross_backend
        p = next(model.parameters())
        dh = d.d_model // d.decoder_attention_heads
        kw = {"device": p.device, "dtype": p.dtype}
        self.model, self.max_batch, self.max_len = model, max_batch, max_len
        shape_self = (d.decoder_layers, max_batch, d.decoder_attention_heads, max_len, dh)
        shape_cross = (d.decoder_layers, max_batch, d.decoder_attention_heads, d.max_source_positions, dh)
        self.self_k, self.self_v = torch.zeros(shape_self, **kw), torch.zeros(shape_self, **kw)
        self.cross_k, self.cross_v = torch.zeros(shape_cross, **kw), torch.zeros(shape_cross, **kw)
        self.tokens = torch.zeros(max_batch, dtype=torch.long, device=p.device)
        self.positions = torch.zeros(max_batch, dtype=torch.long, device=p.device)
        layers = model.model.decoder.layers
        self.w_cross_kv = torch.cat([torch.cat([l.encoder_attn.k_proj.weight, l.encoder_attn.v_proj.weight])
                                     for l in layers])
        self.b_cross_kv = torch.cat([torch.cat([torch.zeros_like(l.encoder_attn.v_proj.bias),
                                                l.encoder_attn.v_proj.bias]) for l in layers])

    @torch.inference_mode()
    def set_cross(self, rows: slice, enc: torch.Tensor) -> None:
        """Project encoder output to every layer's cross K/V in one matmul, into ``rows``."""
        d = self.model.dims
        b, t, _ = enc.shape
        kv = F.linear(enc, self.w_cross_kv, self.b_cross_kv)
        kv = kv.view(b, t, d.decoder_layers, 2, d.decoder_attention_heads, -1).permute(3, 2, 0, 4, 1, 5)
        self.cross_k[:, rows] = kv[0]
        self.cross_v[:, rows] = kv[1]

    def compact(self, keep: torch.Tensor) -> None:
        """Move rows ``keep`` (indices) to the front, so later steps run on fewer rows."""
        m = keep.numel()
        for buf in (self.self_k, self.self_v, self.cross_k, self.cross_v):
            for layer in range(buf.shape[0]):
                buf[layer, :m] = buf[layer, keep]
        self.tokens[:m] = self.tokens[keep]
        self.positions[:m] = self.positions[keep]

    def _cross_kernel(self):
        if self.cross_backend == "auto":
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                            "efficient": SDPBackend.EFFICIENT_ATTENTION,
                            "math": SDPBackend.MATH}[self.cross_backend])

    @torch.inference_mode()
    def step(self, n: int, t: int) -> torch.Tensor:
        """One decoder step for rows ``[:n]`` (token ``tokens[i]`` at ``positions[i]``), reading
        ``t`` self-attention positions; returns float32 logits (n, vocab)."""
        dec = self.model.model.decoder
        tok, pos = self.tokens[:n], self.positions[:n]
        rows = torch.arange(n, device=tok.device)
        mask = (torch.arange(t, device=tok.device)[None, :] <= pos[:, None])[:, None, None, :]
        x = (dec.embed_tokens(tok) + dec.embed_positions(pos))[:, None, :]
        for i, layer in enumerate(dec.layers):
            a = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q, k, v = a.split(a.q_proj(h)), a.split(a.k_proj(h)), a.split(a.v_proj(h))
            self.self_k[i, rows, :, pos] = k[:, :, 0]
            self.self_v[i, rows, :, pos] = v[:, :, 0]
            x = x + a.merge(F.scaled_dot_product_attention(
                q, self.self_k[i, :n, :, :t], self.self_v[i, :n, :, :t], attn_mask=mask))
            c = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            with self._cross_kernel():
                x = x + c.merge(F.scaled_dot_product_attention(
                    c.split(c.q_proj(h)), self.cross_k[i, :n], self.cross_v[i, :n]))
            x = x + layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))
        h = dec.layer_norm(x[:, 0])
        return F.linear(h, dec.embed_tokens.weight).float()
