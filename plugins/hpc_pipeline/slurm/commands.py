"""The argv of every remote command the hook runs. The hook joins each with
:func:`shlex.join`, so job names, paths, dates and arguments holding spaces, quotes, ``;`` or
``$(...)`` reach the shell as literal strings; shell logic lives in constant ``sh -c`` scripts
whose values are positional arguments, never part of the script text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hpc_pipeline.config import SlurmResources
from hpc_pipeline.slurm.jobs import check_job_name
from hpc_pipeline.slurm.parse import SACCT_FIELDS, SEP, SQUEUE_FIELDS

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._:@+-]+\Z")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# sacct cannot answer: slurmdbd down / accounting disabled / not reachable.
_ACCOUNTING_DOWN = re.compile(
    r"accounting storage is disabled|slurmdbd|talking to the database|"
    r"connection refused|unable to connect|timed out",
    re.IGNORECASE,
)
# Per file: "<lines> <lines holding the marker m> <path>" (POSIX awk: gawk, mawk, busybox).
_COUNT_LINES = (
    'FNR == 1 { if (p != "") print n, f, p; n = 0; f = 0; p = FILENAME } '
    '{ n++ } index($0, m) { f++ } END { if (p != "") print n, f, p }'
)
# The progress probe: $1 job ids ("" = skip squeue), $2 results dir ("" = skip counting),
# $3 "m=<marker>", $4 the awk program, $5 squeue's -o format, then find's name tests.
# Sections are headed by lines starting with "@@" (squeue's "<id>..." and awk's
# "<n> <f> <path>" lines start with a digit); each part ends with "@@rc <status>".
_PROBE_SCRIPT = """ids=$1 dir=$2 marker=$3 prog=$4 fmt=$5; shift 5
if [ -n "$ids" ]; then echo @@squeue; squeue -h -r -t PD -j "$ids" -o "$fmt"; echo "@@rc $?"; fi
if [ -n "$dir" ]; then echo @@count
  if [ -d "$dir" ]; then find "$dir" -maxdepth 1 -type f "$@" -exec awk -v "$marker" "$prog" {} +
    echo "@@rc $?"; else echo "@@rc 0"; fi
fi"""
#: Exit status of ``list_tree`` when the directory does not exist (not an error).
NO_SUCH_DIR = 3
_LIST_TREE = (
    '[ -d "$1" ] || exit 3; cd -- "$1" || exit 4; '
    "exec find . -mindepth 1 ! -type d -printf '%s %T@ %P\\0'"
)


def sbatch(
    script: str,
    *,
    job_name: str,
    resources: SlurmResources,
    output: str,
    env: dict[str, str] | None = None,
    array: str | None = None,
    dependency: str | None = None,
    chdir: str | None = None,
    script_args: Sequence[str] = (),
) -> list[str]:
    """``sbatch --parsable``.

    The environment is given to ``sbatch`` itself (``env K=V sbatch --export=ALL``) rather
    than as ``--export=ALL,K=V``: SLURM splits ``--export`` on commas, so a value holding a
    comma would be cut. ``--export=ALL`` carries it to the job."""
    argv: list[str] = []
    if env:
        bad = [k for k in env if not _ENV_KEY.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable names: {bad}")
        argv += ["env", *(f"{k}={v}" for k, v in env.items())]
    argv += [
        "sbatch",
        "--parsable",
        "--export=ALL",
        f"--job-name={check_job_name(job_name)}",
        f"--output={output}",
        f"--time={resources.time}",
        f"--cpus-per-task={resources.cpus_per_task}",
    ]
    for flag, value in (
        ("partition", resources.partition),
        ("account", resources.account),
        ("qos", resources.qos),
        ("mem", resources.mem),
        ("gres", resources.gres),
        ("dependency", dependency),
        ("chdir", chdir),
    ):
        if value:
            argv.append(f"--{flag}={value}")
    if array is not None:
        limit = resources.array_parallelism
        argv.append(f"--array={array}%{limit}" if limit else f"--array={array}")
    return [*argv, *resources.extra_args, "--", script, *script_args]


def sbatch_job_id(stdout: str) -> str:
    """``--parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
    return stdout.strip().split(";")[0]


# sacct's rows as ``parse.parse_sacct`` reads them: one per job or array index (``-X``: no
# job steps), the fields separated by SEP.
_SACCT = ["sacct", "-X", "--parsable2", "--noheader", f"--delimiter={SEP}",
          f"--format={','.join(SACCT_FIELDS)}"]  # fmt: skip


def sacct(job_ids: Sequence[str]) -> list[str]:
    """The rows of every job / array index of ``job_ids``."""
    return [*_SACCT, "-j", ",".join(job_ids)]


def sacct_attempts(job_ids: Sequence[str]) -> list[str]:
    """Every attempt of ``job_ids`` (``-D``: a requeued job's ended attempts too)."""
    return [*_SACCT, "-D", "-j", ",".join(job_ids)]


def sacct_history(name: str, days: int) -> list[str]:
    """The submit user's jobs of the last ``days`` named ``name``. sacct's ``--name`` filter
    misses names with quotes or ';' (slurmdbd escapes them): for those, every job of the
    period is listed and the caller matches the name."""
    by_name = [f"--name={name}"] if _PLAIN_NAME.match(name) else []
    return [*_SACCT, *by_name, f"--starttime=now-{days}days"]


def accounting_down(stderr: str) -> bool:
    """sacct failed because accounting cannot answer (not because the query was wrong)."""
    return bool(_ACCOUNTING_DOWN.search(stderr))


def squeue(selector: Sequence[str]) -> list[str]:
    """Every state (``-t all``), one row per array index (``-r``)."""
    fmt = ",".join(f"{f}:{SEP}" for f in SQUEUE_FIELDS)
    return ["squeue", "-h", "-r", "-t", "all", *selector, "-O", fmt]


def squeue_by_ids(job_ids: Sequence[str]) -> list[str]:
    return squeue(["-j", ",".join(job_ids)])


def squeue_by_name(name: str) -> list[str]:
    return squeue(["--me", f"--name={check_job_name(name)}"])


def scancel(job_ids: Sequence[str]) -> list[str]:
    return ["scancel", *job_ids]


def show_config() -> list[str]:
    return ["scontrol", "show", "config"]


def tail(path: str, lines: int) -> list[str]:
    return ["tail", "-n", str(lines), "--", path]


def list_tree(path: str) -> list[str]:
    """Every non-directory under ``path``, NUL-terminated records (any file name parses)."""
    return ["sh", "-c", _LIST_TREE, "list_tree", path]


def progress_probe(
    pending_job_ids: Sequence[str], directory: str, names: Sequence[str] | None, marker: str
) -> list[str]:
    """squeue's reasons for ``pending_job_ids`` and the line counts of ``directory``'s files
    ``names`` (None: every ``shard-*.jsonl``; ``directory == ""``: no counting)."""
    if names is None:
        match = ["-name", "shard-*.jsonl"]
    else:
        match = ["("] + [a for n in names for a in ("-o", "-name", n)][1:] + [")"]
    return [
        "sh",
        "-c",
        _PROBE_SCRIPT,
        "progress_probe",
        ",".join(pending_job_ids),
        directory,
        f"m={marker}",
        _COUNT_LINES,
        f"%i{SEP}%r",
        *match,
    ]


def tar_tree(root: str, subdir: str) -> list[str]:
    """``root/subdir`` as one gzip'd tar on stdout, members sorted by path."""
    return ["tar", "--sort=name", "-czf", "-", "-C", root, "--", subdir]


def free_space(path: str) -> list[str]:
    return ["df", "-Pk", "--", path]
