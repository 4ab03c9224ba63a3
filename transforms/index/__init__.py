"""The index: how archive videos become rows, and how rows are stored, read and committed.

``changes``: the listing against the live index. ``segments``: probe, decode and hash.
``finalise``: one outcome per video. ``store``: reading through the manifest. ``batches``:
writing a batch and committing it to the manifest.
May import: ``transforms.hashing``, ``transforms.media``, ``transforms.io``, ``schemas``.
"""
