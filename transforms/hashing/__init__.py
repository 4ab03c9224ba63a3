"""From thumbnails to codes: the hashes, and which boxes of a picture get hashed.

Two words for two sides of one idea, a box of a picture hashed on its own: a **region** is
a box of an archive frame stored in the index (``regions``); a **variant** is a box of a
posted image (possibly mirrored) searched against them (``variants``). ``pruning`` keeps a
frame only when its key moved. ``pdq`` is PDQ as Meta defines it (the reference C++ on whole
pictures, and the index's batched PDQ of full-size frames from smaller pictures); ``vpdq``
is vPDQ's rule for deciding that two videos' frame hashes match.
May import: ``transforms.media``, ``transforms.io``, ``schemas``.
"""
