"""The shared kernel: what every room of the sidecar may import, and which imports nothing else of ours.

- ``events``: the typed events that cross every boundary (transcripts, alerts, suggestions, calls).
- ``turns``: a transcript turn as data (a recorded call's line), for code that must not read call files.
- ``bus``, ``redis_bus``: the per-call event log and its fan-out, in memory and on Redis Streams.
- ``clock``: real and simulated time.
- ``errors``: the error types every layer raises and the service maps to status codes.
- ``settings``: typed settings read from the environment.
- ``text``: language-neutral text helpers (sentences, clauses, normalisation, Chinese detection).
- ``redact``: PII redaction, applied before anything is stored, shown or logged.

Media (``sidecar``), coaching (``coach``) and knowledge (``knowledge``) meet through these types;
``tests/test_layering.py`` keeps the kernel free of imports from the rooms above it.
"""
