"""Storage plumbing every job shares, through Beam's ``FileSystems`` (local and ``gs://``).

``files``: sources, local copies for FFmpeg, sidecars, atomic small writes. ``listing``: the
listing step. ``parquet``: the one Parquet writer and reader of tables and partitions.
``gcs_auth``: anonymous credentials under a Cloud Storage emulator, applied explicitly.
May import: ``schemas`` only.
"""
