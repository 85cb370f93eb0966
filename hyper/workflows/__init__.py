"""Data-parallel workflows on both hosts: split an input into an array's parts (split.py), a finaliser that
receives every part's output (finalize.py), a completion notice over HTTP (notify.py), and files staged
between the submit machine and the job's work directory (staging.py). The host's storage area (area.py) is
a directory under the local host's data directory, or the aws host's S3 bucket.

qsub calls ``submit.submit_workflow``; the worker calls ``hooks.before_job`` / ``after_job`` / ``job_ended``
around each attempt; the local agent and the aws scheduler call ``hooks.sweep`` on every sweep.
"""
