"""The hosted config as the operator reaches it, against a REAL S3 API server (moto on 127.0.0.1):
an AWS-style ``s3://`` pointer is checked from the operator side (the host's curl cannot use the
instance role Ignition uses), restored on rollback, and every failure keeps its own message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flatcar_infra.reprovision.preflight import operator_side
from flatcar_infra.reprovision.source import ConfigSource, SourceError
from flatcar_infra.ssh import run_sync
from flatcar_infra.testbed.bucket import LocalBucket
from tests.reprovision.helpers import desired


@pytest.fixture(scope="module")
def bucket() -> Iterator[LocalBucket]:
    with LocalBucket("configs") as b:
        yield b


@pytest.fixture
def aws(bucket: LocalBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's environment as boto3 reads it, pointed at the moto server (boto3 honours
    AWS_ENDPOINT_URL_S3 like any S3 endpoint override)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bucket.credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bucket.credentials.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", bucket.endpoint)


def test_an_aws_style_pointer_passes_its_precheck(bucket: LocalBucket, aws: None) -> None:
    d = desired(delivery="pointer", config_url="s3://configs/web-1/config.ign")
    src = ConfigSource.for_url(d.config_url)
    assert src == ConfigSource("configs", "web-1/config.ign")
    bucket.put("web-1/config.ign", d.config, public=False)
    refusals, warnings, held = run_sync(lambda: operator_side(d, None))
    assert refusals == [] and warnings == [] and held is not None


def test_each_failure_keeps_its_own_message(bucket: LocalBucket, aws: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    d = desired(delivery="pointer", config_url="s3://configs/web-2/config.ign")
    refusals, _, _ = run_sync(lambda: operator_side(d, None))
    assert len(refusals) == 1 and "does not exist (HTTP 404)" in refusals[0].reason
    bucket.put("web-2/config.ign", b'{"ignition":{"version":"3.3.0"}}', public=False)
    refusals, _, _ = run_sync(lambda: operator_side(d, None))
    assert len(refusals) == 1 and "does not hold the new config yet" in refusals[0].reason
    gone = desired(delivery="pointer", config_url="s3://no-such-bucket/x.ign")
    refusals, _, _ = run_sync(lambda: operator_side(gone, None))
    assert len(refusals) == 1 and "the bucket no-such-bucket does not exist" in refusals[0].reason
    # credentials the server rejects: the preflight says so (the server checks SigV4 signatures)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refusals, warnings, _ = run_sync(lambda: operator_side(d, None))
    denied = "access denied to read s3://configs/web-2/config.ign"
    assert refusals == [] and any(denied in w for w in warnings)
    # no credentials here: not a refusal, the stamp proves after the reboot what Ignition applied
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    refusals, warnings, _ = run_sync(lambda: operator_side(d, None))
    assert refusals == [] and any("no credentials" in w and "stamp proves" in w for w in warnings)
    with pytest.raises(SourceError) as exc:
        ConfigSource("configs", "web-2/config.ign").read_sync()
    assert exc.value.kind == "no-credentials"


def test_restore_and_read_back_through_an_explicit_endpoint(bucket: LocalBucket, aws: None) -> None:
    src = ConfigSource.from_spec({"bucket": "configs", "key": "web-3/config.ign", "endpoint": bucket.endpoint,
                                  "public": True})
    run_sync(lambda: src.write(b"previous config"))
    assert run_sync(src.read) == b"previous config" and bucket.get("web-3/config.ign") == b"previous config"
    # public-read kept: Ignition fetches it anonymously over http(s)
    import urllib.request

    with urllib.request.urlopen(bucket.host_url("web-3/config.ign"), timeout=10) as r:
        assert r.read() == b"previous config"
    with pytest.raises(Exception, match="config_source"):
        ConfigSource.from_spec({"bucket": "b"})


def test_spaces_and_arn_urls_name_their_object() -> None:
    s = ConfigSource.for_url("https://my-space.fra1.digitaloceanspaces.com/flatcar-infra/abc/config.ign")
    assert s == ConfigSource("my-space", "flatcar-infra/abc/config.ign", "https://fra1.digitaloceanspaces.com",
                             "fra1", True)
    assert ConfigSource.for_url("arn:aws:s3:::b/k") == ConfigSource("b", "k")
    assert ConfigSource.for_url("https://example.com/c.ign") is None
