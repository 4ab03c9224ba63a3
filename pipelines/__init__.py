"""framematch's jobs (index, match, ...) and the ``framematch`` command line."""
