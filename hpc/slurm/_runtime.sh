# shellcheck shell=bash
# Sourced by the job scripts: run a Python entry point of the release in the container
# runtime named by CONTAINER_RUNTIME. sbatch copies job scripts to a spool directory, so the
# code is found through PIPELINE_RELEASE (a release dir holding slurm/ and src/), never $0.
#
# Environment:
#   PIPELINE_RELEASE   release directory (required)
#   CONTAINER_RUNTIME  apptainer | singularity | none   (default: apptainer)
#   IMAGES_DIR         directory of the .sif images (container runtimes)
#   STAGING_ROOT       bound into the container (container runtimes)
#   MODELS_DIR         bound into the container when set (audio job)
#   HPC_PYTHON         interpreter for CONTAINER_RUNTIME=none (default: python3)
#   STAGING_UMASK      umask for what the job writes on staging (default 0077: owner only;
#                      0027 with a site staging_group, whose setgid dirs pass the group on)

# run_entry IMAGE GPU(0|1) MODULE [ARGS...]: run `python -m MODULE ARGS` with the release's src/
# first on PYTHONPATH, so a job always runs the release it was submitted with.
run_entry() {
  local image=$1 gpu=$2 module=$3
  shift 3
  if [[ -z ${PIPELINE_RELEASE:-} || ! -d $PIPELINE_RELEASE/src ]]; then
    echo "PIPELINE_RELEASE must name a release directory containing src/ (got '${PIPELINE_RELEASE:-}')" >&2
    exit 2
  fi
  local src=$PIPELINE_RELEASE/src runtime=${CONTAINER_RUNTIME:-apptainer}
  umask "${STAGING_UMASK:-0077}"
  echo "job ${SLURM_JOB_ID:-local} on $(hostname -s): $module via $runtime, release $PIPELINE_RELEASE" >&2
  case $runtime in
    apptainer | singularity)
      : "${IMAGES_DIR:?IMAGES_DIR must name the directory holding $image.sif}"
      : "${STAGING_ROOT:?STAGING_ROOT must be set so the staging area is bound into the container}"
      local opts=(--bind "$src:/opt/audio_pipeline/src" --bind "$STAGING_ROOT")
      if [[ -n ${MODELS_DIR:-} ]]; then opts+=(--bind "$MODELS_DIR"); fi
      if [[ $gpu == 1 ]]; then opts=(--nv "${opts[@]}"); fi
      exec "$runtime" exec "${opts[@]}" --env PYTHONPATH=/opt/audio_pipeline/src \
        "$IMAGES_DIR/$image.sif" python3 -m "$module" "$@"
      ;;
    none)
      PYTHONPATH=$src exec "${HPC_PYTHON:-python3}" -m "$module" "$@"
      ;;
    *)
      echo "unknown CONTAINER_RUNTIME '$runtime': use apptainer, singularity or none" >&2
      exit 2
      ;;
  esac
}
