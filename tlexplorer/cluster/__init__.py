"""Run the analysis's chunked model passes on a Dask cluster (``tlexplorer analyze --workers N`` or
``--scheduler tcp://HOST:PORT``; ``tlexplorer.analyze(..., client=client)``). See docs/distributed.md.

``client`` starts or reaches the cluster, ``tasks`` is what a worker runs, ``chunked`` plans the tasks
and stores their results through the bundle writer. Importing this package does not import Dask.
"""
from .client import INSTALL_HINT, cluster_client, connect, require_distributed, start_local_cluster

__all__ = ["INSTALL_HINT", "cluster_client", "connect", "require_distributed", "start_local_cluster"]
