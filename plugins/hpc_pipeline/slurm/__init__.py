"""The SLURM core: everything the pipeline knows about SLURM that is not I/O, with no Airflow
import, so it can be tested and reused on its own (like the SSH provider's
``utils/remote_job.py`` under its operators).

- ``commands``: the argv of every remote command (sbatch, sacct, squeue, probes);
- ``parse``: ``sacct``/``squeue``/``scontrol`` output into ``jobs.JobState`` rows;
- ``jobs``: job rows, names, ids, newest-run selection, log paths;
- ``states``: SLURM states, the verdict on each and what a failure means for the user;
- ``verdict``: the verdict on a set of jobs or an array, and what a retry resubmits;
- ``arrays``: splitting a day's array under the site's limits;
- ``progress``: the progress line (array counts, clips done from result lines).

``hooks.slurm.SlurmHook`` runs the commands over SSH; the trigger, operator and sensor are
thin adapters over this package.
"""
