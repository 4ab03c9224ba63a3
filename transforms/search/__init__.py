"""Finding candidate frames for query codes: exact Hamming search and spans.

``mih``: multi-index hashing. ``reference``: the searchable rows a worker holds.
``spans``: matched rows collapsed into ranked spans per video. ``pdq_rows``: PDQ search of
received hash lists.
May import: ``transforms.index``, ``transforms.hashing``, ``transforms.media``,
``transforms.io``, ``schemas``.
"""
