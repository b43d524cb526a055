"""The local bucket changes only for requests signed with its credentials (AWS SigV4): anonymous
writes from any local user, or from a guest through its guestfwd, get S3's 403; guests still read
their config anonymously (public-read) or through a presigned URL, which is checked for expiry."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from flatcar_infra.testbed.bucket import GUEST_BUCKET_HOST, LocalBucket, free_port
from flatcar_infra.testbed.s3auth import Credentials

KEY = "auth/config.ign"
ORIGINAL = b'{"ignition":{"version":"3.3.0"}}'


def raw(bucket: LocalBucket, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One plain HTTP request, as curl or a guest would send it (no AWS SDK)."""
    conn = http.client.HTTPConnection("127.0.0.1", bucket.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers={"Host": GUEST_BUCKET_HOST, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def bucket(local_bucket: LocalBucket) -> LocalBucket:
    local_bucket.put(KEY, ORIGINAL)
    local_bucket.put("auth/private.ign", b"private", public=False)
    return local_bucket


def test_anonymous_writes_get_403_and_change_nothing(bucket: LocalBucket) -> None:
    path = f"/{bucket.bucket}/{KEY}"
    for method, body in (("PUT", b'{"evil":true}'), ("DELETE", None), ("POST", b"x")):
        status, reply = raw(bucket, method, path, body)
        assert status == 403 and b"<Code>AccessDenied</Code>" in reply, (method, reply)
    status, reply = raw(bucket, "PUT", f"/{bucket.bucket}/auth/new.ign", b"{}")
    assert status == 403
    assert raw(bucket, "PUT", "/another-bucket")[0] == 403  # no bucket creation either
    assert raw(bucket, "GET", f"/{bucket.bucket}")[0] == 403  # nor listing
    assert bucket.get(KEY) == ORIGINAL
    with pytest.raises(ClientError):
        bucket.client().head_object(Bucket=bucket.bucket, Key="auth/new.ign")


def test_guests_still_read_public_and_presigned_objects(bucket: LocalBucket) -> None:
    assert raw(bucket, "GET", f"/{bucket.bucket}/{KEY}") == (200, ORIGINAL)
    assert raw(bucket, "HEAD", f"/{bucket.bucket}/{KEY}")[0] == 200
    assert raw(bucket, "GET", f"/{bucket.bucket}/auth/private.ign")[0] == 403
    signed = urllib.parse.urlsplit(bucket.presigned_url("auth/private.ign"))
    assert raw(bucket, "GET", f"{signed.path}?{signed.query}") == (200, b"private")
    tampered = signed.query.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    status, reply = raw(bucket, "GET", f"{signed.path}?{tampered}")
    assert status == 403 and b"SignatureDoesNotMatch" in reply
    other_key = urllib.parse.urlsplit(bucket.presigned_url("auth/private.ign")).query
    assert raw(bucket, "GET", f"/{bucket.bucket}/{KEY}?{other_key}")[0] == 403  # signed for another object
    v2 = f"AWSAccessKeyId={bucket.credentials.access_key}&Signature=abc%3D&Expires=9999999999"
    status, reply = raw(bucket, "GET", f"{signed.path}?{v2}")
    assert status == 403 and b"Signature Version 4" in reply


def test_presigned_urls_expire(bucket: LocalBucket) -> None:
    signed = urllib.parse.urlsplit(bucket.presigned_url("auth/private.ign", expires=1))
    time.sleep(2.5)
    status, reply = raw(bucket, "GET", f"{signed.path}?{signed.query}")
    assert status == 403 and b"Request has expired" in reply


def test_only_the_servers_credentials_sign(bucket: LocalBucket) -> None:
    wrong_secret = LocalBucket(bucket.bucket, port=bucket.port,
                               credentials=Credentials(bucket.credentials.access_key, "not-the-secret"))
    with pytest.raises(ClientError) as err:
        wrong_secret.put(KEY, b'{"evil":true}')
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    stranger = LocalBucket(bucket.bucket, port=bucket.port, credentials=Credentials.generate())
    with pytest.raises(ClientError) as err:
        stranger.client().delete_object(Bucket=bucket.bucket, Key=KEY)
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert bucket.get(KEY) == ORIGINAL
    bucket.put(KEY, b'{"v":2}')  # the owner can
    assert raw(bucket, "GET", f"/{bucket.bucket}/{KEY}") == (200, b'{"v":2}')


def test_a_signed_request_with_another_body_is_refused(bucket: LocalBucket) -> None:
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    url = f"{bucket.endpoint}/{bucket.bucket}/{KEY}"
    request = botocore.awsrequest.AWSRequest(method="PUT", url=url, data=b'{"v":"signed"}')
    creds = botocore.credentials.Credentials(bucket.credentials.access_key, bucket.credentials.secret_key)
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    status, reply = raw(bucket, "PUT", f"/{bucket.bucket}/{KEY}", b'{"v":"swapped"}', headers)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in reply
    assert bucket.get(KEY) == ORIGINAL


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Credentials]]:
    creds = Credentials.generate()
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key}))
    port = free_port()
    serve = [sys.executable, "-m", "flatcar_infra.testbed.bucket", "serve", "--port", str(port),
             "--credentials", str(path)]
    proc = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().strip() == f"serving S3 on 127.0.0.1:{port}"
        yield port, creds
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_the_detached_server_checks_signatures_too(served: tuple[int, Credentials]) -> None:
    port, creds = served
    owner = LocalBucket.attach(port, creds)
    url = owner.put("m/config.ign", b"{}")
    assert url == f"http://{GUEST_BUCKET_HOST}/{owner.bucket}/m/config.ign"
    assert raw(owner, "PUT", f"/{owner.bucket}/m/config.ign", b"x")[0] == 403
    assert raw(owner, "GET", f"/{owner.bucket}/m/config.ign") == (200, b"{}")


def test_the_local_targets_server_keeps_its_credentials_to_itself(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from flatcar_infra.procs import pid_alive
    from flatcar_infra.testbed import local

    monkeypatch.setenv("FLATCAR_INFRA_HOME", str(tmp_path / "home"))
    server = local.bucket_server(lambda phase, message: None)
    try:
        cred_file = local.credentials_path()
        assert cred_file.stat().st_mode & 0o777 == 0o600
        assert server.credentials.secret_key in cred_file.read_text()
        assert server.credentials.secret_key not in (local.home() / "bucket.json").read_text()
        assert local.list_machines() == []  # neither state file is taken for a machine
        assert local.bucket_server(lambda phase, message: None) == server  # reused while alive
        owner = server.client()
        owner.put("local/m/config.ign", b"{}")
        assert raw(owner, "PUT", f"/{owner.bucket}/local/m/config.ign", b"x")[0] == 403
        with pytest.raises(local.UserError, match="reserved"):
            local.check_name("bucket")
    finally:
        assert local.stop_bucket_server()
    assert not pid_alive(server.pid) and not local.credentials_path().exists()
