"""The jobs (``index``, ``match``, ``stream``: each a ``run(argv)`` wiring ``transforms``) and
the ``framematch`` command (``cli``); admin and analyst commands live in ``commands``."""
