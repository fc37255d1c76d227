"""A local Dask cluster of two worker processes, shared by the tests of tlexplorer.cluster."""
import pytest

from tlexplorer.cluster import start_local_cluster


@pytest.fixture(scope="session")
def dask_client():
    cluster, client = start_local_cluster(2, dashboard_address=":0")
    yield client
    client.close()
    cluster.close()
