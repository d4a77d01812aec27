"""Beam search on the batch decoder's rows, with CTranslate2's search rules.

Why rows, not a batch dimension: each chunk decodes on ``beam_size`` rows that read its
window's one cross K/V (the span kernel takes any window per row), so beams add rows (decoder
steps, self-attention caches) but never copies of cross K/V. After each step the
``beam_size`` best continuations of a chunk take over its rows; a row continuing another row's
hypothesis takes a copy of that row's self-attention cache. The rules are CTranslate2's (so
faster-whisper's, WhisperX's), not openai-whisper's: a continuation ending in end-of-text is
kept as a hypothesis and its row goes dead, and a chunk stops when its *best* continuation
ends (openai-whisper stops once ``beam_size`` hypotheses ended, so short ones end the search
early); the hypothesis with the best average log-probability per token wins.

The prompt phase (no-speech probability, language) is ``BatchDecoder.prompt_phase``, the one
greedy decoding runs too: this module only searches the text.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audio_hpc.engines.torch_pack import Layout
from audio_hpc.engines.torch_rows import Decoded, Encoded, RowDecoder


@torch.inference_mode()
def beam_search(
    dec: RowDecoder,
    layout: Layout,
    encoded: Encoded | None = None,
    fixed_tokens: list[int] | None = None,
) -> list[Decoded]:
    """Beam search at temperature 0 for the chunks of ``layout`` (<= ``dec.max_chunks``);
    ``fixed_tokens`` as in ``BatchDecoder.decode`` (every beam of a chunk ends at that length)."""
    b, n = dec.options.beam_size, len(layout.spans)
    prompted = dec.prompt_phase(layout, encoded, b)
    dev, lp, st = dec.device, len(dec.prompt), dec.state
    v, eot = dec.model.dims.vocab_size, dec.vocab.eot
    chunk = torch.arange(n, device=dev).repeat_interleave(b)  # live row -> chunk
    score = torch.full((n, b), -torch.inf, device=dev)  # per live chunk, beam
    score[:, 0] = 0.0  # the beams of a chunk are one until it speaks
    hist = torch.full((n * b, dec.max_new), eot, device=dev)  # live row's text tokens
    ended: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    fixed = None if fixed_tokens is None else dec.fixed_lengths(fixed_tokens)
    logits = prompted.logits
    for g in range(dec.max_new):
        live = chunk.numel()
        if g:
            logits = dec.logits(live)
        m = live // b
        logprobs = F.log_softmax(logits + (dec.begin_bias if g == 0 else dec.bias), dim=-1)
        if fixed is not None:  # end-of-text before the length: never; at it: only
            at = (g >= fixed[chunk])[:, None]
            logprobs = torch.where(at == (torch.arange(v, device=dev) == eot), logprobs, -torch.inf)
        ids = chunk[::b].tolist()
        if g == dec.max_new - 1:  # out of room: every live beam ends here
            final = (score + logprobs[:, eot].view(m, b)).tolist()
            for ci, c in enumerate(ids):
                ended[c] += [
                    (s, hist[ci * b + k, :g].tolist())
                    for k, s in enumerate(final[ci])
                    if s > -torch.inf
                ]
            break
        top, index = (score[:, :, None] + logprobs.view(m, b, v)).view(m, b * v).topk(b, dim=1)
        parent, tok = index // v, index % v
        rows = (torch.arange(m, device=dev)[:, None] * b + parent).view(-1)
        ends = (tok == eot) & top.isfinite()
        for ci, k in torch.nonzero(ends).tolist():
            ended[ids[ci]].append((top[ci, k].item(), hist[rows[ci * b + k], :g].tolist()))
        score, hist = top.masked_fill(tok == eot, -torch.inf), hist[rows]
        hist[:, g] = tok.view(-1)
        src, dst = st.slot[:live][rows], st.slot[:live]
        moved = src != dst
        if moved.any():  # positions [0, lp + g) of the parent's cache
            src, dst = src[moved], dst[moved]
            st.self_k[:, dst, :, : lp + g] = st.self_k[:, src, :, : lp + g]
            st.self_v[:, dst, :, : lp + g] = st.self_v[:, src, :, : lp + g]
        st.tokens[:live], st.positions[:live] = tok.view(-1), lp + g
        open_ = ~ends[:, 0]  # a chunk is done when its best continuation ended
        if not open_.all():
            if not open_.any():
                break
            stay = torch.nonzero(open_.repeat_interleave(b))[:, 0]
            st.keep(stay)
            chunk, hist, score = chunk[stay], hist[stay], score[open_]
    results = []
    for c, (ns, lang) in enumerate(zip(prompted.no_speech.tolist(), prompted.language.tolist())):
        s, tokens = max(ended[c], key=lambda e: e[0] / (len(e[1]) + 1))
        results.append(dec.decoded(tokens, s, ns, lang, 0.0))
    return results
