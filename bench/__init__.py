"""The benchmark suite: captcha-queue against the naive design it replaces and the leading Python queues.

``python -m bench`` (``make bench``) runs every workload for every system on one private Redis and one
simulator, prints a table, and writes ``bench/results/<date>.md`` and ``.png``. It is not a test: nothing
here passes or fails on speed; the report states each target and whether it was met.
"""
