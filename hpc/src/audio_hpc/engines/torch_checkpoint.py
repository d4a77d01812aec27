"""Find a Whisper checkpoint in a models dir (Hugging Face or CTranslate2 layout) and its
vocabulary.

Everything comes from local files: ``tokenizer.json`` for the text, ``config.json`` /
``generation_config.json`` (HF) or the CT2 ``config.json`` for the suppressed tokens. No hub.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from audio_hpc.engines.ct2_weights import ct2_heads, ct2_to_hf, model_bin_bytes, read_ct2


@dataclass(frozen=True)
class Dims:
    """The shape of a Whisper model (HF ``WhisperConfig`` names)."""

    num_mel_bins: int = 128
    max_source_positions: int = 1500
    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    decoder_layers: int = 32
    decoder_attention_heads: int = 20
    decoder_ffn_dim: int = 5120
    vocab_size: int = 51866
    max_target_positions: int = 448


@dataclass(frozen=True)
class Vocab:
    """Token ids the decoder loop needs, and the text tokenizer."""

    tokenizer: Tokenizer
    eot: int
    sot: int
    transcribe: int
    no_timestamps: int
    no_speech: int
    languages: dict[str, int]
    suppress: tuple[int, ...]  # never emitted
    suppress_begin: tuple[int, ...]  # not as the first token (blank, end of text)
    multilingual: bool

    def prompt(self, language: str) -> list[int]:
        """Decoder prompt without timestamps; ``language`` "" leaves a slot to detect it."""
        if not self.multilingual:
            return [self.sot, self.no_timestamps]
        lang = self.languages.get(language or "en", self.languages["en"])
        return [self.sot, lang, self.transcribe, self.no_timestamps]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i < self.eot])


def load_vocab(
    tokenizer_json: Path, suppress: list[int], suppress_begin: list[int], vocab_size: int
) -> Vocab:
    """Build the Vocab from a ``tokenizer.json`` (faster-whisper and HF dirs both ship one)."""
    tok = Tokenizer.from_file(str(tokenizer_json))
    ids = {
        t: tok.token_to_id(t)
        for t in (
            "<|endoftext|>",
            "<|startoftranscript|>",
            "<|transcribe|>",
            "<|notimestamps|>",
            "<|nospeech|>",
            "<|nocaptions|>",
        )
    }
    languages = {
        m.group(1): i
        for t, i in tok.get_vocab(with_added_tokens=True).items()
        if (m := re.fullmatch(r"<\|([a-z]{2,3}|haw)\|>", t))
    }
    return Vocab(
        tokenizer=tok,
        eot=ids["<|endoftext|>"],
        sot=ids["<|startoftranscript|>"],
        transcribe=ids["<|transcribe|>"],
        no_timestamps=ids["<|notimestamps|>"],
        no_speech=ids["<|nospeech|>"] or ids["<|nocaptions|>"],
        languages=languages,
        suppress=tuple(suppress),
        suppress_begin=tuple(suppress_begin),
        multilingual=vocab_size >= 51865,
    )


def _load_ct2(model_dir: Path) -> tuple[Dims, dict[str, torch.Tensor], Vocab]:
    variables = read_ct2(model_bin_bytes(model_dir))
    sd = ct2_to_hf(variables)
    enc_heads, dec_heads = ct2_heads(variables)
    n_enc = sum(1 for k in sd if k.startswith("model.encoder.layers.") and k.endswith("fc1.weight"))
    n_dec = sum(1 for k in sd if k.startswith("model.decoder.layers.") and k.endswith("fc1.weight"))
    d_model, n_mels, _ = sd["model.encoder.conv1.weight"].shape
    dims = Dims(
        num_mel_bins=n_mels,
        max_source_positions=sd["model.encoder.embed_positions.weight"].shape[0],
        d_model=d_model,
        encoder_layers=n_enc,
        encoder_attention_heads=enc_heads,
        encoder_ffn_dim=sd["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_layers=n_dec,
        decoder_attention_heads=dec_heads,
        decoder_ffn_dim=sd["model.decoder.layers.0.fc1.weight"].shape[0],
        vocab_size=sd["proj_out.weight"].shape[0],
        max_target_positions=sd["model.decoder.embed_positions.weight"].shape[0],
    )
    cfg = json.loads((model_dir / "config.json").read_text())
    vocab = load_vocab(
        model_dir / "tokenizer.json",
        cfg.get("suppress_ids", []),
        cfg.get("suppress_ids_begin", []),
        dims.vocab_size,
    )
    return dims, sd, vocab


def _load_hf(model_dir: Path) -> tuple[Dims, dict[str, torch.Tensor], Vocab]:
    cfg = json.loads((model_dir / "config.json").read_text())
    dims = Dims(**{k: cfg[k] for k in Dims.__dataclass_fields__})
    if (model_dir / "model.safetensors").is_file():
        from safetensors.torch import load_file

        sd = load_file(str(model_dir / "model.safetensors"))
    else:
        sd = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    sd.setdefault("proj_out.weight", sd["model.decoder.embed_tokens.weight"])
    gen_path = model_dir / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else cfg
    vocab = load_vocab(
        model_dir / "tokenizer.json",
        gen.get("suppress_tokens") or [],
        gen.get("begin_suppress_tokens") or [],
        dims.vocab_size,
    )
    return dims, sd, vocab


def load_checkpoint(model_dir: Path) -> tuple[Dims, dict[str, torch.Tensor], Vocab]:
    """(dims, HF-named state dict, vocab) from a faster-whisper/CT2 or a HF Whisper dir."""
    if (model_dir / "model.bin").is_file() or any(model_dir.glob("model.bin.part*")):
        return _load_ct2(model_dir)
    if (model_dir / "model.safetensors").is_file() or (model_dir / "pytorch_model.bin").is_file():
        return _load_hf(model_dir)
    raise FileNotFoundError(
        f"{model_dir}: neither a CTranslate2 (model.bin) nor a Hugging Face "
        "(model.safetensors / pytorch_model.bin) Whisper model"
    )
