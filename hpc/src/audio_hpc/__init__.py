"""The cluster side of the audio pipeline, run by the SLURM jobs from a deployed release.

``contract`` holds the formats both sides share (the Airflow side imports it by name);
``plan``, ``transfer.day`` and ``process`` are the three job entry points
(``python -m audio_hpc.<module>``), ``engines`` the transcription engines.
"""
