#!/usr/bin/env bash
# Plan one day: list its clips, drop those already done, shard the rest -> manifest.json.
# Usage: sbatch 0_master_scheduler.sh --date D --staging-root S --backend local|globus \
#          --source-root R [--request PATH] [--shard-size N] [--source-collection ID] ...
# Environment: see slurm/_runtime.sh (PIPELINE_RELEASE, CONTAINER_RUNTIME, ...).
#SBATCH --job-name=audio-master
#SBATCH --partition=cpu
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:30:00
set -euo pipefail
# shellcheck source=hpc/slurm/_runtime.sh
source "${PIPELINE_RELEASE:?PIPELINE_RELEASE must name the release directory}/slurm/_runtime.sh"
run_entry pipeline_utils 0 audio_hpc.plan "$@"
