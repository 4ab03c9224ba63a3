"""What only the streaming job needs: one Parquet file per window, GCS notifications.
May import: ``transforms.io``, ``schemas``.
"""
