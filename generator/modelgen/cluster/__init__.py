"""The cluster as it runs: read through the ``kubernetes`` client (kubeconfig or in-cluster config)."""
