"""Single-query attention over per-row spans of shared K/V slots: the decoder's hot loop.

Why not SDPA: a decoder step is memory-bound (for large-v3 ~90 % of its bytes are the rows'
cross-attention K/V), and SDPA can only make it cheaper by reading fewer bytes, which it cannot:
it wants one dense K/V per row, bf16, all 1500 frames. This kernel reads, for each row, only
two ranges ``[lo, hi)`` and ``[lo2, hi2)`` of a K/V *slot* that several rows may share (clips
packed into one 30 s window share that window's encoder output: a row reads its clip's frames
and the window's trailing padding, ``torch_pack``), and reads float8 (e4m3) K/V with one scale
per slot, head and frame as readily as bf16. The same kernel serves self-attention (slot =
the row's own cache, range ``[0, position]``, second range empty).

On CUDA with Triton it is one kernel launch (graph-capturable: spans and slots are read from
device tensors); elsewhere ``reference`` computes the same thing with gathers and SDPA.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the reference path serves
    triton = None

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
BLOCK = 256  # frames per step of the kernel's loop (swept on an H100:
WARPS = 2  # 256 frames, 2 warps, no pipelining read fp8 K/V 20 % faster)
STORE_FRAMES = 64  # frames per program of the K/V store
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, H, T, D) -> float8 values and float32 scales (S, H, T): per slot, head and frame,
    so loud frames do not flatten the resolution of quiet ones (a per-channel scale over all
    frames cost tiny.en 1.4 WER points)."""
    scale = x.abs().amax(dim=3).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale[..., None]).to(FP8), scale


# The references, kernels and their launchers share one argument list each; kept dense,
# each call reads against its signature.
# fmt: off
def store_reference(kv: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first: int,
                    k_scale: torch.Tensor | None = None,
                    v_scale: torch.Tensor | None = None) -> None:
    """What ``store`` does, with torch ops (any device)."""
    kv = kv.permute(3, 2, 0, 4, 1, 5)             # (2, L, B, H, T, D)
    windows = slice(first, first + kv.shape[2])
    if k_scale is None or v_scale is None:
        k[:, windows], v[:, windows] = kv[0], kv[1]
        return
    for i in range(kv.shape[1]):      # layer by layer: float32 temporaries stay small
        k[i, windows], k_scale[i, windows] = quantize(kv[0, i])
        v[i, windows], v_scale[i, windows] = quantize(kv[1, i])


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]``, for float8 too (which CPU indexing does not take)."""
    return x.view(torch.uint8)[index].view(FP8) if x.dtype == FP8 else x[index]


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot: torch.Tensor,
              ranges: torch.Tensor, k_scale: torch.Tensor | None = None,
              v_scale: torch.Tensor | None = None) -> torch.Tensor:
    """What ``attend`` computes, with torch ops (any device)."""
    kr, vr = (_rows(x, slot).to(q.dtype) for x in (k, v))
    if k_scale is not None and v_scale is not None:
        kr = kr * k_scale[slot][..., None].to(q.dtype)
        vr = vr * v_scale[slot][..., None].to(q.dtype)
    t = torch.arange(k.shape[2], device=q.device)[None, :]
    lo, hi, lo2, hi2 = ranges.T[..., None]
    mask = (((t >= lo) & (t < hi)) | ((t >= lo2) & (t < hi2)))[:, None, None, :]
    return F.scaled_dot_product_attention(q[:, :, None], kr, vr, attn_mask=mask)[:, :, 0]


if triton is not None:
    @triton.jit
    def _attend_block(q, k_ptr, v_ptr, ks_ptr, vs_ptr, base, scale_base, sk_t, first, stop,
                      m, total, acc, D: tl.constexpr, BLOCK: tl.constexpr, SCALED: tl.constexpr):
        """Online-softmax update of (max, sum, weighted V) by frames [first, first + BLOCK)
        that are < stop."""
        d = tl.arange(0, D)
        t = first + tl.arange(0, BLOCK)
        inside = t < stop
        offs = base + t[:, None] * sk_t + d[None, :]
        k = tl.load(k_ptr + offs, mask=inside[:, None], other=0.0).to(tl.float32)
        score = tl.sum(k * q[None, :], axis=1)
        if SCALED:
            score = score * tl.load(ks_ptr + scale_base + t, mask=inside, other=0.0)
        score = tl.where(inside, score, -float("inf"))
        m_new = tl.maximum(m, tl.max(score, axis=0))
        p = tl.exp(score - m_new)
        alpha = tl.exp(m - m_new)
        pv = p
        if SCALED:
            pv = p * tl.load(vs_ptr + scale_base + t, mask=inside, other=0.0)
        v = tl.load(v_ptr + offs, mask=inside[:, None], other=0.0).to(tl.float32)
        return (m_new, total * alpha + tl.sum(p, axis=0),
                acc * alpha + tl.sum(pv[:, None] * v, axis=0))

    @triton.jit
    def _attend_kernel(q_ptr, k_ptr, v_ptr, ks_ptr, vs_ptr, slot_ptr, ranges_ptr, o_ptr,
                       sq_r, sq_h, sk_s, sk_h, sk_t, ss_s, ss_h, so_r, so_h, sm_scale,
                       D: tl.constexpr, BLOCK: tl.constexpr, N_BLOCKS: tl.constexpr,
                       SCALED: tl.constexpr, FIXED: tl.constexpr):
        r = tl.program_id(0)
        h = tl.program_id(1)
        s = tl.load(slot_ptr + r).to(tl.int64)
        d = tl.arange(0, D)
        q = tl.load(q_ptr + r * sq_r + h * sq_h + d).to(tl.float32) * sm_scale
        base = s * sk_s + h * sk_h
        scale_base = s * ss_s + h * ss_h
        m = tl.full((), -float("inf"), tl.float32)
        total = tl.zeros((), tl.float32)
        acc = tl.zeros((D,), tl.float32)
        for j in range(0, 2):       # the row's two frame ranges
            start = tl.load(ranges_ptr + 4 * r + 2 * j)
            stop = tl.load(ranges_ptr + 4 * r + 2 * j + 1)
            if FIXED:       # Triton's CPU interpreter cannot loop to a loaded bound (tests)
                for i in range(0, N_BLOCKS):
                    m, total, acc = _attend_block(q, k_ptr, v_ptr, ks_ptr, vs_ptr, base, scale_base,
                                                  sk_t, start + i * BLOCK, stop, m, total, acc,
                                                  D, BLOCK, SCALED)
            else:
                for first in range(start, stop, BLOCK):
                    m, total, acc = _attend_block(q, k_ptr, v_ptr, ks_ptr, vs_ptr, base,
                                                  scale_base, sk_t, first, stop, m, total, acc,
                                                  D, BLOCK, SCALED)
        out = acc / total
        tl.store(o_ptr + r * so_r + h * so_h + d, out.to(o_ptr.dtype.element_ty))


if triton is not None:
    @triton.jit
    def _store_kernel(src_ptr, out_ptr, scale_ptr, which, first, frames, heads,
                      s_b, s_t, so_l, so_s, so_h, so_t, ss_l, ss_s, ss_h,
                      D: tl.constexpr, FRAMES: tl.constexpr, QUANT: tl.constexpr):
        """One (window, block of frames, layer x head) of K (``which`` 0) or V (1)."""
        n_t = tl.cdiv(frames, FRAMES)
        b, tb = tl.program_id(0) // n_t, tl.program_id(0) % n_t
        g = tl.program_id(1)
        layer, h = g // heads, g % heads
        t = tb * FRAMES + tl.arange(0, FRAMES)
        d = tl.arange(0, D)
        inside = t < frames
        feature = ((layer * 2 + which) * heads + h) * D
        row = b.to(tl.int64) * s_b + t[:, None].to(tl.int64) * s_t
        x = tl.load(src_ptr + row + feature + d[None, :],
                    mask=inside[:, None], other=0.0).to(tl.float32)
        dst = layer.to(tl.int64) * so_l + (first + b).to(tl.int64) * so_s + h * so_h
        if QUANT:
            scale = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-12) / 448.0
            x = x / scale[:, None]
            tl.store(scale_ptr + layer.to(tl.int64) * ss_l + (first + b).to(tl.int64) * ss_s
                     + h * ss_h + t, scale, mask=inside)
        tl.store(out_ptr + dst + t[:, None] * so_t + d[None, :], x.to(out_ptr.dtype.element_ty),
                 mask=inside[:, None])


def store(kv: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first: int,
          k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> None:
    """Write windows' cross-attention K/V, as the projection makes them, into slots.

    kv (B, T, L, 2, H, D) contiguous (every layer's K and V projection of B windows' encoder
    output); k, v (L, S, H, T, D); window b goes to slot ``first + b``. float8 ``k``/``v``
    get per-frame scales in ``k_scale``/``v_scale`` (L, S, H, T), as ``quantize`` makes them.
    Why a kernel: torch's quantize of the permuted projection ran ~12 memory passes over it
    and took a third of the engine's GPU time on an H100; this reads it once.
    """
    if triton is None or not kv.is_cuda:
        return store_reference(kv, k, v, first, k_scale, v_scale)
    triton_store(kv, k, v, first, k_scale, v_scale)


def triton_store(kv: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first: int,
                 k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> None:
    """``store`` by the Triton kernel (on CPU tensors too under ``TRITON_INTERPRET=1``)."""
    b, frames, layers, _, heads, dim = kv.shape
    quant = k_scale is not None
    for which, (out, given) in enumerate(((k, k_scale), (v, v_scale))):
        scale = given if given is not None else out     # pointer unused when not quantizing
        _store_kernel[(b * triton.cdiv(frames, STORE_FRAMES), layers * heads)](
            kv, out, scale, which, first, frames, heads, kv.stride(0), kv.stride(1),
            out.stride(0), out.stride(1), out.stride(2), out.stride(3),
            scale.stride(0) if quant else 0, scale.stride(1) if quant else 0,
            scale.stride(2) if quant else 0, D=dim, FRAMES=STORE_FRAMES, QUANT=quant, num_warps=4)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot: torch.Tensor,
           ranges: torch.Tensor, k_scale: torch.Tensor | None = None,
           v_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of one query per row over two ranges of frames of a shared K/V slot.

    q (n, H, D); k, v (S, H, T, D), bf16/fp16/fp32 or float8 with ``k_scale``/``v_scale``
    (S, H, T) float32; slot (n,) int; ranges (n, 4) int, contiguous: row i attends to frames
    ``[lo, hi)`` and ``[lo2, hi2)`` (disjoint, not both empty) of ``k[slot[i]]``.
    Returns (n, H, D) in q's dtype.
    """
    if triton is None or not q.is_cuda:
        return reference(q, k, v, slot, ranges, k_scale, v_scale)
    return triton_attend(q, k, v, slot, ranges, k_scale, v_scale)


def triton_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot: torch.Tensor,
                  ranges: torch.Tensor, k_scale: torch.Tensor | None = None,
                  v_scale: torch.Tensor | None = None) -> torch.Tensor:
    """``attend`` by the Triton kernel (on CPU tensors too under ``TRITON_INTERPRET=1``)."""
    n, heads, dim = q.shape
    out = torch.empty_like(q)
    scaled = k_scale is not None and v_scale is not None
    ks, vs = (k_scale, v_scale) if k_scale is not None and v_scale is not None else (q, q)
    _attend_kernel[(n, heads)](
        q, k, v, ks, vs, slot, ranges, out,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2),
        ks.stride(0) if scaled else 0, ks.stride(1) if scaled else 0,
        out.stride(0), out.stride(1), 1.0 / math.sqrt(dim),
        D=dim, BLOCK=BLOCK, N_BLOCKS=triton.cdiv(k.shape[2], BLOCK), SCALED=scaled,
        FIXED=INTERPRETED, num_warps=WARPS, num_stages=1)
    return out
# fmt: on
