"""Everything that talks to AWS. The only package (with ``hyper/store/dynamodb/``) that imports boto3.

Nothing here imports boto3 at module import time: ``import hyper.aws.tables`` renders table definitions for
``--dry-run`` without paying the ~160 ms boto3 import, and the local host never imports this package at all.
"""
