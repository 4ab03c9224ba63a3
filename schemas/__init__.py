"""Record types of every table framematch writes, each beside its pyarrow schema."""
