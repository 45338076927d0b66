"""Named random streams of the GRN evaluation, independent of each other and of how many are used."""
from __future__ import annotations

import numpy as np

# The order is the SeedSequence child each stream takes: child i does not depend on how many
# are spawned, so adding a stream at the end changes none of the others.
STREAMS = ("degree_matched", "random_network", "enrichment", "rewired_network")


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One generator per name of STREAMS; :func:`.enrichment.regulator_enrichment` draws from
    "enrichment", as :func:`.metrics.evaluate` does, so its table matches the metrics row."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}
