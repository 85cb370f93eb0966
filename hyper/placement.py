"""Reading back where a worker runs, from the ``host`` text it writes into its registry record.

The worker writes it (hyper/worker/identity.py ``host_text``): the machine's name, then ``key=value`` details
when known, e.g. ``ip-10-0-1-7 region=eu-west-1 batch_job=6f1c...:12``. Readers (``qstat -f``, the Batch
backend asking which workers ended) live outside the worker, so the parsing lives here, beside neither.
"""

from __future__ import annotations


def parse_host(text: str) -> dict[str, str]:
    """``host_text`` back into {"host": ..., "region": ..., "batch_job": ...} (only what is there)."""
    parts = (text or "").split()
    if not parts:
        return {}
    out = {"host": parts[0]}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key:
            out[key] = value
    return out
