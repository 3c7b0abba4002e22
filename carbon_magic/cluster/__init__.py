"""Work a cell sends to a cluster (Dask, Ray), measured with the cell.

Shared, naming no engine:

- ``identity``: hosts by machine identity, processes by pid and ancestry.
- ``agent``: inside a worker or node, its trackers and the counters they report.
- ``combine``: pure: two edges' replies → the cell's cluster figures, nothing twice.
- ``engine``: the seam: what an engine module provides, and the list of engines.
- ``collect``: in the kernel: discovery, installation, reading at cell edges and live.

One module per engine:

- ``dask_engine`` (with ``dask_plugins``, sent by value): a tracker in each Dask worker.
- ``ray_engine`` (with ``ray_node``): a tracker per Ray node, in a detached actor.

Install with ``pip install carbon_magic[dask]`` or ``carbon_magic[ray]``; the workers
and nodes need carbon_magic too.
"""

from carbon_magic.cluster.collect import ClusterCollector
from carbon_magic.cluster.combine import add_cluster, cluster_figures, describe

__all__ = ["ClusterCollector", "add_cluster", "cluster_figures", "describe"]
