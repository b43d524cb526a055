"""A real S3 API server on loopback (moto) holding the config bucket, as the guest sees it.

The guest reaches the server through one QEMU ``guestfwd`` at ``http://10.0.2.100/`` (port 80),
so object URLs handed to a VM are path-style ``http://10.0.2.100/<bucket>/<key>``. The guest
cannot authenticate: objects are written ``public-read`` (or handed out as presigned URLs),
exactly the two ways DOMAIN.md gives for a cloud's S3-compatible store.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Any

from flatcar_infra.canonical import canonical_bytes

GUEST_BUCKET_HOST = "10.0.2.100"
DEFAULT_BUCKET = "flatcar-infra-configs"
# moto accepts any credentials; these fixed ones keep the host's real AWS credentials out of it.
_ACCESS_KEY = "flatcar-infra-local"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pointer_config(url: str, version: str = "3.3.0") -> bytes:
    """The never-changing user-data: an Ignition config that replaces itself with ``url``.

    The same bytes for the same URL every time; it never embeds the config's hash, so updating
    the object behind the URL never changes the user-data.
    """
    return canonical_bytes({"ignition": {"version": version, "config": {"replace": {"source": url}}}})


class LocalBucket:
    """One bucket on a moto S3 server bound to 127.0.0.1.

    ``LocalBucket()`` runs its own in-process server (``start``/``stop``);
    ``LocalBucket.attach(port)`` talks to a server someone else runs (the local target's
    detached ``moto_server``).
    """

    def __init__(self, bucket: str = DEFAULT_BUCKET, *, port: int = 0) -> None:
        self.bucket = bucket
        self._port = port
        self._server: Any = None
        self._owns_server = True

    @classmethod
    def attach(cls, port: int, bucket: str = DEFAULT_BUCKET) -> LocalBucket:
        self = cls(bucket, port=port)
        self._owns_server = False
        self._ensure_bucket()
        return self

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("bucket server not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """The S3 endpoint as the host sees it."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalBucket:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port or free_port(),
                                          verbose=False)
        self._server.start()
        self._port = int(self._server.get_host_and_port()[1])
        self._ensure_bucket()
        return self

    def stop(self) -> None:
        if self._server is not None and self._owns_server:
            self._server.stop()
        self._server = None

    def __enter__(self) -> LocalBucket:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def client(self, endpoint: str | None = None) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
                            aws_access_key_id=_ACCESS_KEY, aws_secret_access_key=_ACCESS_KEY)

    def _ensure_bucket(self) -> None:
        client = self.client()
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if self.bucket not in names:
            client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, *, public: bool = True) -> str:
        """Store ``data`` at ``key`` (public-read unless ``public=False``); returns the guest URL."""
        extra = {"ACL": "public-read"} if public else {}
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data,
                                 ContentType="application/json", **extra)
        return self.url(key)

    def get(self, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def url(self, key: str) -> str:
        """The object's URL as the guest reaches it (path-style, through the guestfwd)."""
        return f"http://{GUEST_BUCKET_HOST}/{self.bucket}/{key}"

    def host_url(self, key: str) -> str:
        return f"{self.endpoint}/{self.bucket}/{key}"

    def presigned_url(self, key: str, expires: int = 3600) -> str:
        """A presigned GET URL valid from inside the guest (signed for the guest's host name)."""
        url: str = self.client(f"http://{GUEST_BUCKET_HOST}").generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires)
        return url
