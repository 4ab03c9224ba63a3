"""What an operator sees at the end of a run: the job's Beam metrics, one line each."""

from __future__ import annotations

from apache_beam.runners.runner import PipelineResult


def print_metrics(result: PipelineResult, namespace: str) -> dict[str, int]:
    """Print (and return) the counters and distributions of one namespace."""
    metrics = result.metrics().query()
    totals: dict[str, int] = {}
    for counter in metrics["counters"]:
        if counter.key.metric.namespace == namespace:
            name = counter.key.metric.name
            totals[name] = totals.get(name, 0) + counter.committed
    lines = [f"  {name}: {value}" for name, value in sorted(totals.items())]
    for dist in metrics["distributions"]:
        if dist.key.metric.namespace == namespace and dist.committed and dist.committed.count:
            d = dist.committed
            lines.append(f"  {dist.key.metric.name}: n={d.count} mean={d.mean:.1f} "
                         f"min={d.min} max={d.max}")
    if lines:
        print(f"{namespace} metrics:\n" + "\n".join(sorted(set(lines))))
    return totals
