"""The ``kubernetes`` client, configured as it configures itself: in a pod, the pod's service
account; elsewhere ``$KUBECONFIG`` or ``~/.kube/config`` (and its current context)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from modelgen.errors import ClusterError, ClusterRefused, ClusterUnreachable

log = logging.getLogger(__name__)
T = TypeVar("T")

# A cluster that does not answer must not hang a command.
TIMEOUT_SECONDS = 15


def api_client(context: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster config in a pod, else the kubeconfig (``context``, or its current one)."""
    from kubernetes import client, config
    from urllib3.util.retry import Retry

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            # $KUBECONFIG as it is now: the client's default is its value when the client was imported.
            kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
            config.load_kube_config(kubeconfig, context, client_configuration=configuration)
        except (config.ConfigException, OSError, TypeError) as err:
            raise ClusterError(f"no cluster to read: {err} (set KUBECONFIG, or run in a pod)") from err
    # No retries: a silent cluster costs TIMEOUT_SECONDS, not four times that, and a refused
    # connection is one line, without urllib3's warning about each retry before it.
    configuration.retries = Retry(total=0)
    return client.ApiClient(configuration)


def request(api: Any, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)`` with a deadline; its failure as one line saying ``what`` was asked.

    ``ClusterUnreachable`` when no answer came, ``ClusterRefused`` when the API server said no.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return call(*args, _request_timeout=TIMEOUT_SECONDS, **kwargs)
    except ApiException as err:
        if err.status == 0:  # the client's way of saying TLS failed: there was no HTTP answer
            raise ClusterUnreachable(f"cannot reach the cluster at {api.configuration.host}: {err.reason}") from err
        raise ClusterRefused(f"cannot {what}: {_status_message(err)}") from err
    except (HTTPError, OSError) as err:
        raise ClusterUnreachable(f"cannot reach the cluster at {api.configuration.host}: {_why(err)}") from err


def _status_message(err: Any) -> str:
    """The message of the Status object the API server answers errors with, else the HTTP status."""
    try:
        message = json.loads(err.body).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return f"{message} (HTTP {err.status})" if message else f"HTTP {err.status} {err.reason}"


def _why(err: BaseException) -> str:
    """What stopped the request, in a few words: the socket's error (refused, unknown host), or the deadline."""
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    chain: list[BaseException] = []
    seen: BaseException | None = getattr(err, "reason", None) or err
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for cause in chain:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    # Checked second: urllib3 counts a refused connection as a timeout too.
    if any(isinstance(cause, TimeoutError | Urllib3Timeout) for cause in chain):
        return f"no answer within {TIMEOUT_SECONDS} s"
    return str(chain[0])


def image_digest(namespace: str, name: str, tag: str = "latest") -> str | None:
    """The digest the ImageStream ``name`` in ``namespace`` has for ``tag`` (what its BuildConfig pushed), or None."""
    from kubernetes import client

    try:
        api = api_client()
        stream = request(
            api,
            f"read the ImageStream {namespace}/{name}",
            client.CustomObjectsApi(api).get_namespaced_custom_object,
            "image.openshift.io",
            "v1",
            namespace,
            "imagestreams",
            name,
        )
    except ClusterError as err:
        log.info("no image digest of %s/%s from the cluster: %s", namespace, name, err)
        return None
    for entry in (stream.get("status") or {}).get("tags") or []:
        if entry.get("tag") == tag and entry.get("items"):
            return entry["items"][0].get("image")
    return None
