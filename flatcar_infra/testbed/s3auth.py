"""The local bucket's front door: AWS Signature Version 4 checked before moto sees a request.

moto's S3 server accepts any request, signed or not, so on its own any local user (or a guest
VM, through its guestfwd) could overwrite the config object a machine boots from. ``S3AuthFront``
wraps moto's WSGI app and lets through only

- requests signed with the server's credentials, in the ``Authorization`` header or as a
  presigned URL (query parameters; checked for expiry too, which moto does not do), and
- anonymous ``GET``/``HEAD`` of an object, which moto then answers by the object's ACL
  (``public-read``: 200, private: 403) — how a guest reads its config, as from a cloud store.

Everything else gets S3's own 403 answer (``AccessDenied``, ``SignatureDoesNotMatch``, ...).
The verification follows AWS's SigV4 rules for S3 (path not normalized, payload hash from
``x-amz-content-sha256`` and checked against the body).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import secrets
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = dt.timedelta(minutes=15)
MAX_EXPIRES = 7 * 24 * 3600

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> Credentials:
        return cls("FIL" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))


class Denied(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    """Each name and value decoded and encoded the AWS way, sorted by name then value."""
    unq = urllib.parse.unquote
    encoded = sorted((_uri_encode(unq(k)), _uri_encode(unq(v))) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def parse_query(raw: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw.split("&") if raw else []:
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def signature(secret: str, scope: str, canonical_request: str, amz_date: str) -> str:
    """The SigV4 signature of ``canonical_request`` for ``scope`` (``DATE/REGION/SERVICE/aws4_request``)."""
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_headers(headers: dict[str, str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        if name not in headers:
            raise Denied(403, "AccessDenied", f"signed header {name!r} is missing")
        lines.append(f"{name}:{' '.join(headers[name].split())}\n")
    return "".join(lines)


def _parse_time(amz_date: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise Denied(403, "AccessDenied", f"unreadable X-Amz-Date {amz_date!r}") from None


@dataclass
class SignedRequest:
    """What the verifier needs of an HTTP request (header names lower-case)."""

    method: str
    path: str  # as sent, percent-encoded
    query: str  # as sent
    headers: dict[str, str]
    body: bytes


def verify(req: SignedRequest, creds: Credentials, now: dt.datetime | None = None) -> bool:
    """True when ``req`` is signed with ``creds`` (header or presigned URL), False when it is not
    signed at all; raises ``Denied`` for a bad, foreign or expired signature."""
    now = now or dt.datetime.now(dt.UTC)
    pairs = parse_query(req.query)
    params = {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, v in pairs}
    if "X-Amz-Signature" in params:
        return _verify_presigned(req, pairs, params, creds, now)
    if "Signature" in params:
        raise Denied(403, "AccessDenied", "only AWS Signature Version 4 is accepted (a SigV2 presigned URL)")
    auth = req.headers.get("authorization")
    if auth is None:
        return False
    if not auth.startswith(ALGORITHM + " "):
        raise Denied(403, "AccessDenied", "only AWS Signature Version 4 is accepted")
    fields = dict(part.strip().split("=", 1) for part in auth[len(ALGORITHM) + 1:].split(",") if "=" in part)
    try:
        credential, signed, given = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as exc:
        raise Denied(403, "AccessDenied", f"Authorization header without {exc.args[0]}") from None
    amz_date = req.headers.get("x-amz-date", "")
    when = _parse_time(amz_date)
    if abs(now - when) > MAX_SKEW:
        raise Denied(403, "RequestTimeTooSkewed",
                     "The difference between the request time and the current time is too large.")
    payload = req.headers.get("x-amz-content-sha256")
    if payload is None:
        raise Denied(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    if payload.startswith("STREAMING-"):
        raise Denied(501, "NotImplemented", "chunked (streaming) uploads are not supported here")
    if payload != UNSIGNED and payload != hashlib.sha256(req.body).hexdigest():
        raise Denied(400, "XAmzContentSHA256Mismatch",
                     "The provided 'x-amz-content-sha256' header does not match what was computed.")
    return _check(req, creds, credential, signed.split(";"), given, amz_date, canonical_query(pairs), payload)


def _verify_presigned(req: SignedRequest, pairs: list[tuple[str, str]], params: dict[str, str],
                      creds: Credentials, now: dt.datetime) -> bool:
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise Denied(403, "AccessDenied", "only AWS Signature Version 4 is accepted")
    try:
        credential, signed = params["X-Amz-Credential"], params["X-Amz-SignedHeaders"]
        amz_date, expires = params["X-Amz-Date"], int(params["X-Amz-Expires"])
    except (KeyError, ValueError):
        raise Denied(403, "AuthorizationQueryParametersError", "incomplete presigned URL") from None
    if not 1 <= expires <= MAX_EXPIRES:
        raise Denied(403, "AuthorizationQueryParametersError",
                     "X-Amz-Expires must be between 1 and 604800 seconds")
    when = _parse_time(amz_date)
    if now > when + dt.timedelta(seconds=expires):
        raise Denied(403, "AccessDenied", "Request has expired")
    if now < when - MAX_SKEW:
        raise Denied(403, "AccessDenied", "Request is not valid yet")
    query = canonical_query([(k, v) for k, v in pairs if urllib.parse.unquote(k) != "X-Amz-Signature"])
    payload = req.headers.get("x-amz-content-sha256", UNSIGNED)
    given = params["X-Amz-Signature"]
    return _check(req, creds, credential, signed.split(";"), given, amz_date, query, payload)


def _check(req: SignedRequest, creds: Credentials, credential: str, signed: list[str], given: str,
           amz_date: str, query: str, payload: str) -> bool:
    access_key, _, scope = credential.partition("/")
    if not hmac.compare_digest(access_key, creds.access_key):
        raise Denied(403, "InvalidAccessKeyId",
                     "The AWS Access Key Id you provided does not exist in our records.")
    parts = scope.split("/")
    if len(parts) != 4 or parts[3] != "aws4_request" or parts[0] != amz_date[:8]:
        raise Denied(403, "AuthorizationHeaderMalformed", f"bad credential scope {scope!r}")
    canonical = "\n".join([req.method.upper(), req.path or "/", query,
                           _canonical_headers(req.headers, signed), ";".join(signed), payload])
    expected = signature(creds.secret_key, scope, canonical, amz_date)
    if not hmac.compare_digest(expected, given):
        raise Denied(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                     "the signature you provided. Check your key and signing method.")
    return True


class S3AuthFront:
    """WSGI middleware: signed requests and anonymous object reads pass to ``app``; the rest is denied."""

    def __init__(self, app: WsgiApp, creds: Credentials) -> None:
        self.app = app
        self.creds = creds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or urllib.parse.quote(environ["PATH_INFO"])
        path, _, query = raw.partition("?")
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        req = SignedRequest(environ["REQUEST_METHOD"], path, query, headers, body)
        try:
            if not verify(req, self.creds) and not anonymous_object_read(req):
                raise Denied(403, "AccessDenied", "Access Denied")
        except Denied as exc:
            return _deny(start_response, exc, path)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def anonymous_object_read(req: SignedRequest) -> bool:
    """GET or HEAD of ``/bucket/key`` without sub-resources: what a guest does to fetch its config."""
    bucket, _, key = req.path.lstrip("/").partition("/")
    return req.method in ("GET", "HEAD") and bool(bucket) and bool(key) and not req.query


def _deny(start_response: Callable[..., Any], exc: Denied, resource: str) -> list[bytes]:
    from xml.sax.saxutils import escape

    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{exc.code}</Code>'
            f"<Message>{escape(exc.message)}</Message><Resource>{escape(resource)}</Resource>"
            f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>").encode()
    reason = {400: "Bad Request", 403: "Forbidden", 501: "Not Implemented"}.get(exc.status, "Error")
    start_response(f"{exc.status} {reason}", [("Content-Type", "application/xml"),
                                              ("Content-Length", str(len(body)))])
    return [body]
