#!/usr/bin/env bash
# One array task = one shard: FFmpeg -> 16 kHz mono -> WhisperX -> results/<plan>/shard-XXXX.jsonl
# Usage: sbatch --array=0-N 2_process_audio_job.sh --date D --staging-root S \
#          --models-dir M --model NAME [--engine whisperx|torch] [--language en] ...
# Environment: see slurm/_runtime.sh (MODELS_DIR is bound into the container when set);
#   ARRAY_INDEX_OFFSET (default 0) is added to SLURM_ARRAY_TASK_ID to name the shard.
#SBATCH --job-name=audio-shard
#SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
set -euo pipefail
# shellcheck source=hpc/slurm/_runtime.sh
source "${PIPELINE_RELEASE:?PIPELINE_RELEASE must name the release directory}/slurm/_runtime.sh"
# A day's array split into several submissions (site limits): each part's indices start at
# 0 and the operator passes the part's first shard in ARRAY_INDEX_OFFSET.
: "${SLURM_ARRAY_TASK_ID:?submit as an array job (--array)}"
run_entry audio_processing 1 audio_hpc.process --shard "$((SLURM_ARRAY_TASK_ID + ${ARRAY_INDEX_OFFSET:-0}))" "$@"
