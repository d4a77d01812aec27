"""Transcripts as a product: full-text search and columnar export of the results DB.

Read-only; served by the monitoring app and used by the DAG's optional ``export_day`` step.
"""
