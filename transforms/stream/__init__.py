"""What only the streaming job needs: one Parquet file per window, GCS notifications, and
event time by arrival (``arrival``: nothing is dropped as late).
May import: ``transforms.io``, ``schemas``.
"""
