"""Finding candidate frames for query codes: exact Hamming search and spans.

``mih``: multi-index hashing. ``shards``: a shard's searchable rows, and the cache of the
shards a worker process holds.
``spans``: matched rows collapsed into ranked spans per video. ``pdq_rows``: PDQ search of
received hash lists.
May import: ``transforms.index``, ``transforms.hashing``, ``transforms.media``,
``transforms.io``, ``schemas``.
"""
