#!/usr/bin/env bash
# Bring the manifest's clips to <staging>/<D>/audio/ and write transfer.json.
# Usage: sbatch 1_globus_transfer_job.sh --date D --staging-root S --backend local|globus \
#          [--globus-credentials FILE --source-collection ID --dest-collection ID] ...
# Environment: see slurm/_runtime.sh; GLOBUS_CLIENT_ID/GLOBUS_CLIENT_SECRET when no file.
#SBATCH --job-name=audio-transfer
#SBATCH --partition=cpu
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=12:00:00
set -euo pipefail
# shellcheck source=hpc/slurm/_runtime.sh
source "${PIPELINE_RELEASE:?PIPELINE_RELEASE must name the release directory}/slurm/_runtime.sh"
run_entry pipeline_utils 0 audio_hpc.transfer.day "$@"
