#!/usr/bin/env bash
# The README demo: one whole day end to end on sample clips through the real local stack
# (SLURM + sshd dev cluster, PostgreSQL, Airflow scheduler/triggerer/api-server), then the
# day's summary from PostgreSQL. Expects `make up` to have run (the Makefile does it).
#
# Usage: scripts/demo.sh run|stop
# The sample day is yesterday (UTC): unpausing the @daily DAG makes the scheduler create the
# run for the latest midnight, which processes yesterday; the demo follows that run.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DAY=$(date -u -d yesterday +%F)
SOURCE_ROOT=/srv/audio-source
export AIRFLOW_HOME=${AIRFLOW_HOME:-$REPO/.airflow/demo}

run() {
  if [[ ! -d $SOURCE_ROOT/$DAY ]]; then
    echo "[demo] synthesizing sample clips for $DAY into $SOURCE_ROOT/$DAY"
    "$REPO/.venv/bin/python" "$REPO/hpc/devcluster/sample_clips.py" "$SOURCE_ROOT" "$DAY"
  fi
  chmod -R a+rX "$SOURCE_ROOT"
  bash "$REPO/scripts/airflow_stack.sh" start
  "$REPO/.venv/bin/python" "$REPO/scripts/airflow_api.py" scheduled audio_pipeline_daily \
    --conf "{\"date\": \"$DAY\"}"
  echo
  echo "== Day $DAY in PostgreSQL (audio_results) =="
  PGPASSWORD=audio psql -h 127.0.0.1 -U audio -d audio_results -P pager=off -v day="$DAY" <<'SQL'
SELECT day, status, clips_listed AS listed, clips_ok AS ok, clips_failed AS failed,
       failed_by_reason, round(audio_seconds::numeric, 1) AS audio_s,
       round(gpu_seconds::numeric, 1) AS gpu_s, round(real_time_factor::numeric, 2) AS rtf
  FROM audio_days WHERE day = :'day';
SELECT c.clip_id, c.status, coalesce(c.error_kind, '') AS error_kind,
       round(c.duration_s::numeric, 1) AS dur_s, left(coalesce(t.text, c.error), 60) AS text_or_error
  FROM audio_clips c LEFT JOIN transcripts t USING (clip_id)
 WHERE c.day = :'day' ORDER BY c.clip_id;
SQL
  echo "Airflow UI: http://127.0.0.1:8080 (admin / admin); stop everything with: make down"
  echo "Status page: http://127.0.0.1:8080/audio-pipeline/?day=$DAY (or \"Audio pipeline\" in the UI's nav);"
  echo "  API docs: http://127.0.0.1:8080/audio-pipeline/docs, metrics: /audio-pipeline/metrics (login needed)"
}

case ${1:-run} in
  run) run ;;
  stop) bash "$REPO/scripts/airflow_stack.sh" stop ;;
  *) echo "usage: $0 run|stop" >&2; exit 2 ;;
esac
