"""Reusable Beam steps and the plain functions behind them, one subpackage per concern.

Dependencies point one way: ``pipelines`` -> ``transforms`` -> ``schemas``; nothing here
imports ``pipelines``, ``evaluation`` or ``bench``. Inside ``transforms`` a subpackage may
import only those listed before it:

    io       files, listings, Parquet tables on any Beam filesystem (local, gs://)
    media    FFmpeg decoding, image intake, stills, the one preprocessing path, pictures
    hashing  hashes of thumbnails, index regions, query variants, pruning
    index    change detection, decode stage, the index's table store and batch commits
    search   multi-index hashing, the loaded reference index, spans, PDQ rows
    verify   local features (ORB + RANSAC) and the verification stage
    results  analyst tables: DuckDB views, run records, verdicts, HTML, hash formats
    match    the match job's steps: intake, search stage, answers, re-matching
    stream   what only the streaming job needs: window sink, notifications
"""
