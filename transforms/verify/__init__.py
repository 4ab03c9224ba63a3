"""Local-feature verification: does a posted image show a candidate frame?

``local_features``: ORB features and a RANSAC similarity with plausibility checks.
``stage``: the Beam stage that re-checks a query's candidates against stored pictures.
May import: ``transforms.search``, ``transforms.index``, ``transforms.hashing``,
``transforms.media``, ``transforms.io``, ``schemas``.
"""
