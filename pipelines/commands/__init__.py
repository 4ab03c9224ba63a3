"""The small ``framematch`` commands beside the jobs: index admin, checks, analyst tools,
hash exchange, evaluation and the demo. Each is a ``run(argv)`` returning an exit code."""
