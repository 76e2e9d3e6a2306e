"""The ``kubernetes`` client, configured as it configures itself: in a pod, the pod's service
account; elsewhere ``$KUBECONFIG`` or ``~/.kube/config`` (and its current context)."""

from __future__ import annotations

import logging
from typing import Any

from modelgen.errors import ClusterError

log = logging.getLogger(__name__)

# A cluster that does not answer must not hang a command.
TIMEOUT_SECONDS = 15


def api_client(context: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster config in a pod, else the kubeconfig (``context``, or its current one)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        pass
    try:
        return config.new_client_from_config(context=context)
    except (config.ConfigException, OSError, TypeError) as err:
        raise ClusterError(f"no cluster to read: {err} (set KUBECONFIG, or run in a pod)") from err


def image_digest(namespace: str, name: str, tag: str = "latest") -> str | None:
    """The digest the ImageStream ``name`` in ``namespace`` has for ``tag`` (what its BuildConfig pushed), or None."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        api = client.CustomObjectsApi(api_client())
        stream = api.get_namespaced_custom_object(
            "image.openshift.io", "v1", namespace, "imagestreams", name, _request_timeout=TIMEOUT_SECONDS
        )
    except (ClusterError, ApiException, HTTPError, OSError) as err:
        log.info("no image digest of %s/%s from the cluster: %s", namespace, name, err)
        return None
    for entry in (stream.get("status") or {}).get("tags") or []:
        if entry.get("tag") == tag and entry.get("items"):
            return entry["items"][0].get("image")
    return None
