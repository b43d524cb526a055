"""The hosted config object as the operator reaches it (S3 API: AWS S3, DigitalOcean Spaces, a
local moto server): read it to check that it holds the new config, write it to restore the
previous config when a new one fails in the initramfs (pointer and URL delivery).

The host fetches the object through the URL Ignition uses (``s3://`` with the instance role, or
``https://``); the operator side uses boto3 with the operator's credentials (the default chain:
``AWS_*`` variables, profiles; ``SPACES_ACCESS_KEY_ID``/``SPACES_SECRET_ACCESS_KEY`` for Spaces).
Every failure keeps its own kind, so it is never reported as a different one.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flatcar_infra.errors import UserError

Kind = Literal["missing", "denied", "no-credentials", "unreachable", "error"]


class SourceError(UserError):
    def __init__(self, kind: Kind, message: str, advice: str | None = None) -> None:
        super().__init__(message, advice)
        self.kind = kind


@dataclass(frozen=True)
class ConfigSource:
    """One object: ``bucket``/``key`` at ``endpoint`` (None: AWS). ``public``: written
    ``public-read`` (an object Ignition fetches anonymously over https must stay readable)."""

    bucket: str
    key: str
    endpoint: str | None = None
    region: str | None = None
    public: bool = False

    @property
    def url(self) -> str:
        return (
            f"s3://{self.bucket}/{self.key}"
            if not self.endpoint
            else f"{self.endpoint}/{self.bucket}/{self.key}"
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ConfigSource:
        """From the ``config_source`` input / CLI options: ``bucket``, ``key``, optional
        ``endpoint``, ``region``, ``public``."""
        unknown = set(spec) - {"bucket", "key", "endpoint", "region", "public"}
        if unknown or not spec.get("bucket") or not spec.get("key"):
            raise UserError(
                f"config_source: expected bucket, key and optionally endpoint, region, public; "
                f"got {sorted(spec)}"
            )
        return cls(
            str(spec["bucket"]),
            str(spec["key"]),
            spec.get("endpoint") or None,
            spec.get("region") or None,
            bool(spec.get("public", False)),
        )

    @classmethod
    def for_url(cls, url: str | None, spec: Mapping[str, Any] | None = None) -> ConfigSource | None:
        """The explicit ``spec`` when given; else what the URL itself names: ``s3://bucket/key``
        (AWS) or ``https://BUCKET.REGION.digitaloceanspaces.com/KEY`` (a public Spaces object)."""
        if spec:
            return cls.from_spec(spec)
        if not url:
            return None
        m = re.fullmatch(r"s3://([^/]+)/(.+)", url)
        if m:
            return cls(m.group(1), m.group(2))
        m = re.fullmatch(r"arn:aws:s3:::([^/]+)/(.+)", url)
        if m:
            return cls(m.group(1), m.group(2))
        m = re.fullmatch(r"https://([^./]+)\.([a-z0-9-]+)\.digitaloceanspaces\.com/(.+)", url)
        if m:
            return cls(
                m.group(1), m.group(3), f"https://{m.group(2)}.digitaloceanspaces.com", m.group(2), True
            )
        return None

    def _client(self) -> Any:
        import boto3

        kw: dict[str, Any] = {}
        if self.endpoint:
            kw["endpoint_url"] = self.endpoint
        if self.region:
            kw["region_name"] = self.region
        if (
            self.endpoint
            and "digitaloceanspaces.com" in self.endpoint
            and os.environ.get("SPACES_ACCESS_KEY_ID")
        ):
            kw["aws_access_key_id"] = os.environ["SPACES_ACCESS_KEY_ID"]
            kw["aws_secret_access_key"] = os.environ.get("SPACES_SECRET_ACCESS_KEY", "")
        # a session per call: boto3's default session caches credentials and is not thread-safe,
        # and many hosts may be checked at once
        return boto3.session.Session().client("s3", **kw)

    def _error(self, exc: Exception, verb: str) -> SourceError:
        import botocore.exceptions as be

        where = f"s3://{self.bucket}/{self.key}" + (f" at {self.endpoint}" if self.endpoint else "")
        if isinstance(exc, be.NoCredentialsError):
            return SourceError(
                "no-credentials",
                f"no credentials on this machine to {verb} {where}",
                "set AWS credentials (or SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY)",
            )
        if isinstance(exc, be.EndpointConnectionError | be.ConnectTimeoutError | be.ReadTimeoutError):
            return SourceError("unreachable", f"cannot reach the S3 endpoint to {verb} {where}: {exc}")
        if isinstance(exc, be.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return SourceError("missing", f"the bucket {self.bucket} does not exist ({where})")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return SourceError("missing", f"{where} does not exist (HTTP 404)", "upload the config first")
            if code in ("AccessDenied", "403", "Forbidden") or status == 403:
                return SourceError(
                    "denied",
                    f"access denied to {verb} {where} with this machine's credentials ({code or status})",
                )
            return SourceError("error", f"cannot {verb} {where}: {code or status}: {exc}")
        return SourceError("error", f"cannot {verb} {where}: {exc}")

    def read_sync(self) -> bytes:
        try:
            body: bytes = self._client().get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
            return body
        except Exception as exc:  # boto3 raises many kinds; each is classified
            raise self._error(exc, "read") from None

    def write_sync(self, data: bytes) -> None:
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": data,
            "ContentType": "application/json",
        }
        if self.public:
            kw["ACL"] = "public-read"
        try:
            self._client().put_object(**kw)
        except Exception as exc:
            raise self._error(exc, "write") from None

    async def read(self) -> bytes:
        return await asyncio.to_thread(self.read_sync)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.write_sync, data)

    def to_spec(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "endpoint": self.endpoint,
            "region": self.region,
            "public": self.public,
        }
