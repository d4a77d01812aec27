"""Whisper in plain torch, with Hugging Face parameter names, built for batched decoding.

Why not ``WhisperForConditionalGeneration.generate``: its cache classes and generation
internals change between transformers 4.57 (HPC venv) and 5.x (GPU image), and its per-step
overhead dominates at large batch. This module depends on torch alone, loads any HF-named
state dict (HF checkpoints, CT2 ones via ``ct2_weights``), and decodes against *static*
buffers (self-attention K/V per row, cross-attention K/V per window), so one decoder step is
a fixed sequence of kernels that a CUDA graph can replay. Attention is SDPA in the encoder and
``torch_attention.attend`` in the decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audio_hpc.engines.torch_attention import FP8, attend, store
from audio_hpc.engines.torch_checkpoint import Dims

N_FFT, HOP = 400, 160


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
        x = x + a.merge(
            F.scaled_dot_product_attention(
                a.split(a.q_proj(h)), a.split(a.k_proj(h)), a.split(a.v_proj(h))
            )
        )
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
        self.layers = nn.ModuleList(
            EncoderLayer(d, dims.encoder_attention_heads, dims.encoder_ffn_dim)
            for _ in range(dims.encoder_layers)
        )
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
        self.layers = nn.ModuleList(
            DecoderLayer(d, dims.decoder_attention_heads, dims.decoder_ffn_dim)
            for _ in range(dims.decoder_layers)
        )
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
            {k: v for k, v in sd.items() if k != "proj_out.weight"}, strict=False
        )
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel of (B, 480000) zero-padded windows, on the model's device."""
        if self.mel_filters is None or self.mel_filters.device != audio.device:
            from transformers.audio_utils import mel_filter_bank

            fb = mel_filter_bank(
                num_frequency_bins=1 + N_FFT // 2,
                num_mel_filters=self.dims.num_mel_bins,
                min_frequency=0.0,
                max_frequency=8000.0,
                sampling_rate=16_000,
                norm="slaney",
                mel_scale="slaney",
            )
            self.mel_filters = torch.from_numpy(fb).float().T.contiguous().to(audio.device)
        stft = torch.stft(
            audio.float(),
            N_FFT,
            HOP,
            window=torch.hann_window(N_FFT, device=audio.device),
            return_complex=True,
        )
        power = stft[..., :-1].abs() ** 2
        mel = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (mel + 4.0) / 4.0


class DecodeState:
    """Static buffers for decoding up to ``max_rows`` rows against as many windows at most.

    Live row ``r`` (rows ``[:n]``) keeps its self-attention cache in slot ``slot[r]`` and reads
    two frame ranges ``cross_ranges[r]`` of window ``window[r]``'s cross-attention K/V (its
    clip's frames and the window's trailing padding; several rows may share a window:
    ``torch_pack``). Dropping finished rows rewrites these small index tensors
    (``keep``); no cache is ever copied. ``cross_fp8`` stores cross K/V as float8 with scales
    (``torch_attention.quantize``), halving the bytes every step reads.

    A CUDA graph replays a bucket of rows, so rows past the live ones run too: they are
    *parked* (``_park``) on a scratch cache slot that no row owns, reading one frame, so they
    cost next to nothing and can never write into a live row's cache.
    """

    def __init__(
        self, model: WhisperTorch, max_rows: int, max_len: int, cross_fp8: bool = False
    ) -> None:
        d = model.dims
        p = next(model.parameters())
        heads, dh = d.decoder_attention_heads, d.d_model // d.decoder_attention_heads
        kw = {"device": p.device, "dtype": p.dtype}
        self.model, self.max_rows, self.max_len = model, max_rows, max_len
        self.cross_fp8 = cross_fp8
        self.scratch = max_rows  # the self-attention slot parked rows use
        shape_self = (d.decoder_layers, max_rows + 1, heads, max_len, dh)
        shape_cross = (d.decoder_layers, max_rows, heads, d.max_source_positions, dh)
        self.self_k, self.self_v = torch.zeros(shape_self, **kw), torch.zeros(shape_self, **kw)
        cross_kw = {**kw, "dtype": FP8} if cross_fp8 else kw
        self.cross_k, self.cross_v = (
            torch.zeros(shape_cross, **cross_kw),
            torch.zeros(shape_cross, **cross_kw),
        )
        scale_shape = (d.decoder_layers, max_rows, heads, d.max_source_positions)
        self.k_scale = torch.ones(scale_shape, device=p.device) if cross_fp8 else None
        self.v_scale = torch.ones(scale_shape, device=p.device) if cross_fp8 else None
        ints = {"dtype": torch.long, "device": p.device}
        self.tokens, self.positions = torch.zeros(max_rows, **ints), torch.zeros(max_rows, **ints)
        self.slot, self.window = torch.arange(max_rows, **ints), torch.zeros(max_rows, **ints)
        self.cross_ranges = torch.zeros(max_rows, 4, **ints)
        self.parked_range = torch.tensor([0, 1, 1, 1], **ints)  # frame 0 alone
        self.self_ranges = torch.zeros(max_rows, 4, **ints)  # [0, position + 1), nothing
        self._park(0)
        layers = model.model.decoder.layers
        self.w_cross_kv = torch.cat(
            [
                torch.cat([layer.encoder_attn.k_proj.weight, layer.encoder_attn.v_proj.weight])
                for layer in layers
            ]
        )
        self.b_cross_kv = torch.cat(
            [
                torch.cat(
                    [
                        torch.zeros_like(layer.encoder_attn.v_proj.bias),
                        layer.encoder_attn.v_proj.bias,
                    ]
                )
                for layer in layers
            ]
        )

    @torch.inference_mode()
    def set_cross(self, first: int, enc: torch.Tensor, windows_per_pass: int = 16) -> None:
        """Project encoder output to every layer's cross K/V (one matmul per
        ``windows_per_pass`` windows: 4 GB for large-v3), into windows ``first, first + 1, ...``."""
        d = self.model.dims
        for i in range(0, len(enc), windows_per_pass):
            part = enc[i : i + windows_per_pass]
            kv = F.linear(part, self.w_cross_kv, self.b_cross_kv)
            store(
                kv.view(*part.shape[:2], d.decoder_layers, 2, d.decoder_attention_heads, -1),
                self.cross_k,
                self.cross_v,
                first + i,
                self.k_scale,
                self.v_scale,
            )

    @torch.inference_mode()
    def start(self, spans: list[tuple[int, int, int, int, int]], first_token: int) -> None:
        """Rows ``[:len(spans)]`` begin at ``first_token``; row i owns cache slot i and reads
        ``spans[i]`` = (window, lo, hi, lo2, hi2): frames [lo, hi) and [lo2, hi2) of it."""
        n = len(spans)
        spans_t = torch.tensor(spans, dtype=torch.long)
        self.window[:n], self.cross_ranges[:n] = spans_t[:, 0], spans_t[:, 1:]
        self.slot[:n] = torch.arange(n)
        self.tokens[:n] = first_token
        self.positions[:n] = 0
        self._park(n)

    def keep(self, rows: torch.Tensor) -> None:
        """Live rows become ``rows`` (indices into the live rows), in that order."""
        m = rows.numel()
        for t in (self.tokens, self.positions, self.slot, self.window, self.cross_ranges):
            t[:m] = t[rows]
        self._park(m)

    def _park(self, first: int) -> None:
        """Rows ``first:`` are not live: scratch slot, position 0, one frame of window 0."""
        self.slot[first:] = self.scratch
        self.tokens[first:] = 0
        self.positions[first:] = 0
        self.window[first:] = 0
        self.cross_ranges[first:] = self.parked_range

    @torch.inference_mode()
    def _cross_scales(self, layer: int) -> tuple[torch.Tensor, ...]:
        """The layer's float8 scales when cross K/V is stored as float8, else nothing."""
        if self.k_scale is None or self.v_scale is None:
            return ()
        return self.k_scale[layer], self.v_scale[layer]

    def step(self, n: int) -> torch.Tensor:
        """One decoder step for rows ``[:n]`` (token ``tokens[i]`` at ``positions[i]``);
        returns float32 logits (n, vocab)."""
        dec, d = self.model.model.decoder, self.model.dims
        heads, dh = d.decoder_attention_heads, d.d_model // d.decoder_attention_heads
        tok, pos, slot, window = self.tokens[:n], self.positions[:n], self.slot[:n], self.window[:n]
        self.self_ranges[:n, 1] = pos + 1
        x = dec.embed_tokens(tok) + dec.embed_positions(pos)
        for i, layer in enumerate(dec.layers):
            a = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            self.self_k[i, slot, :, pos] = a.k_proj(h).view(n, heads, dh)
            self.self_v[i, slot, :, pos] = a.v_proj(h).view(n, heads, dh)
            x = x + a.out_proj(
                attend(
                    a.q_proj(h).view(n, heads, dh),
                    self.self_k[i],
                    self.self_v[i],
                    slot,
                    self.self_ranges[:n],
                ).view(n, -1)
            )
            c = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            x = x + c.out_proj(
                attend(
                    c.q_proj(h).view(n, heads, dh),
                    self.cross_k[i],
                    self.cross_v[i],
                    window,
                    self.cross_ranges[:n],
                    *self._cross_scales(i),
                ).view(n, -1)
            )
            x = x + layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))
        return F.linear(dec.layer_norm(x), dec.embed_tokens.weight).float()
