"""A real S3 API server on loopback (moto) holding the config bucket, as the guest sees it.

The guest reaches the server through one QEMU ``guestfwd`` at ``http://10.0.2.100/`` (port 80),
so object URLs handed to a VM are path-style ``http://10.0.2.100/<bucket>/<key>``. The guest
cannot authenticate: objects are written ``public-read`` (or handed out as presigned URLs),
exactly the two ways DOMAIN.md gives for a cloud's S3-compatible store.

Writes need credentials: moto sits behind ``S3AuthFront`` (``s3auth.py``), which checks every
request's AWS SigV4 signature against the credentials this server was started with and lets
only anonymous object reads through unsigned. So neither another local user nor a guest can
replace a machine's config. ``python -m flatcar_infra.testbed.bucket serve`` runs such a server
on its own (the local target's detached server).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.testbed.s3auth import Credentials, S3AuthFront

GUEST_BUCKET_HOST = "10.0.2.100"
DEFAULT_BUCKET = "flatcar-infra-configs"
REGION = "us-east-1"


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


class S3Server:
    """moto's S3 app behind ``S3AuthFront`` on 127.0.0.1:``port`` (0: a free one), in a thread."""

    def __init__(self, creds: Credentials, port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = S3AuthFront(DomainDispatcherApplication(create_backend_app), creds)
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-server", daemon=True)

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()


class LocalBucket:
    """One bucket on a moto S3 server bound to 127.0.0.1 that only signed requests may change.

    ``LocalBucket()`` runs its own in-process server (``start``/``stop``) with fresh credentials;
    ``LocalBucket.attach(port, creds)`` talks to a server someone else runs (the local target's
    detached ``serve`` process, whose credentials are in its state file).
    """

    def __init__(self, bucket: str = DEFAULT_BUCKET, *, port: int = 0,
                 credentials: Credentials | None = None) -> None:
        self.bucket = bucket
        self.credentials = credentials or Credentials.generate()
        self._port = port
        self._server: S3Server | None = None

    @classmethod
    def attach(cls, port: int, credentials: Credentials, bucket: str = DEFAULT_BUCKET) -> LocalBucket:
        self = cls(bucket, port=port, credentials=credentials)
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
        self._server = S3Server(self.credentials, self._port).start()
        self._port = self._server.port
        self._ensure_bucket()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> LocalBucket:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def client(self, endpoint: str | None = None) -> Any:
        """A boto3 S3 client signing with this bucket's credentials (SigV4, presigned URLs too)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name=REGION,
                            aws_access_key_id=self.credentials.access_key,
                            aws_secret_access_key=self.credentials.secret_key,
                            config=Config(signature_version="s3v4"))

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


def read_credentials(path: Path) -> Credentials:
    data = json.loads(path.read_text())
    return Credentials(str(data["access_key"]), str(data["secret_key"]))


def main(argv: list[str] | None = None) -> int:
    """``serve --port P --credentials FILE``: run the authenticated bucket server until SIGTERM.
    FILE (JSON ``access_key``/``secret_key``, mode 0600) holds the only credentials it accepts."""
    parser = argparse.ArgumentParser(prog="python -m flatcar_infra.testbed.bucket")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="serve the local S3 API on 127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--credentials", type=Path, required=True)
    args = parser.parse_args(argv)
    server = S3Server(read_credentials(args.credentials), args.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"serving S3 on 127.0.0.1:{server.port}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
