"""Work a cell sends to a Dask cluster, measured with the cell.

- ``identity``: hosts by machine identity, processes by pid and ancestry.
- ``plugins``: the worker and scheduler plugins (sent by value, see there why).
- ``agent``: inside a worker, its tracker and the counters it reports.
- ``combine``: pure: two edges' replies → the cell's cluster figures, nothing twice.
- ``collect``: in the kernel: client discovery, installation, reading at cell edges.

Install with ``pip install carbon_magic[dask]``; the workers need carbon_magic too.
"""

from carbon_magic.cluster.collect import ClusterCollector
from carbon_magic.cluster.combine import add_cluster, cluster_figures, describe

__all__ = ["ClusterCollector", "add_cluster", "cluster_figures", "describe"]
