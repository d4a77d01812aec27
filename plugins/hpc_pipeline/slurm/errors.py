"""What a SLURM command can end with, as seen by its caller."""

from __future__ import annotations


class SlurmError(Exception):
    """A SLURM command answered with an error (bad option, unknown partition, ...)."""


class SlurmUnavailable(SlurmError):
    """Neither sacct nor squeue could report on the jobs: the controller is unreachable, or
    the SSH session ended before the command reported an exit status."""
