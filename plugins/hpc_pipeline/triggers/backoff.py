"""The triggers' one backoff rule."""

from __future__ import annotations

import random


def next_interval(attempt: int, first: float, longest: float) -> float:
    """Seconds before poll ``attempt + 1``: exponential (x1.5 per poll, capped at
    ``longest``) with +-20% jitter, so many triggers watching one cluster neither poll in
    lockstep nor hammer slurmctld or the transfer service."""
    return min(longest, first * 1.5 ** min(attempt, 30)) * random.uniform(0.8, 1.2)
