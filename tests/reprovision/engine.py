"""An engine-like driver for Pulumi dynamic providers, over the REAL provider gRPC server.

It starts ``python -m pulumi.dynamic`` (the server the Pulumi engine launches for dynamic
resources) and calls it the way the engine does:

- the provider object is serialized into ``__provider`` with the SDK's own
  ``pulumi.dynamic.dynamic.serialize_provider`` (dill, base64), so the server unpickles the class
  from the installed package, by reference;
- ``Configure`` first (the dynamic server answers ``acceptSecrets: false``, so, like the engine,
  the driver sends secret inputs as plain values and re-marks outputs as secret itself);
- ``register`` runs ``Check`` (olds = previous inputs) → ``Diff`` (olds = previous OUTPUTS) →
  ``Create``/``Update``; in preview it sends unknowns (the engine's sentinel) and never calls
  ``Create``/``Update``.

Every raw response ``Struct`` is kept (``last_raw``) so tests can prove a secret never appears in
plaintext. Reusable by any test area: ``with ProviderEngine() as eng: eng.register(...)``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

PROVIDER_KEY = "__provider"
UNKNOWN = rpc.UNKNOWN
SECRET_SIG = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_VALUE = rpc._special_secret_sig


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(dict(props), {}))
    finally:
        loop.close()


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    """Plain values; secrets unwrapped (``secret_keys`` tells which were secret)."""
    out = rpc.deserialize_properties(s, keep_unknowns=True)
    return {k: rpc.unwrap_rpc_secret(v) for k, v in out.items()}


def secret_keys(s: struct_pb2.Struct) -> set[str]:
    raw = json_format.MessageToDict(s)
    return {k for k, v in raw.items() if isinstance(v, dict) and v.get(SECRET_SIG) == SECRET_VALUE}


def plaintext_strings(s: struct_pb2.Struct) -> list[str]:
    """Every string in a struct that is NOT inside a secret wrapper."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if v.get(SECRET_SIG) == SECRET_VALUE:
                return
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            out.append(v)

    walk(json_format.MessageToDict(s))
    return out


@dataclass
class State:
    """What the engine keeps for one resource between operations."""

    urn: str
    id: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Step:
    """The result of ``register``: what the engine decided and did."""

    op: str  # "create" | "update" | "same" | "replace" | "preview-create" | "preview-update" | ...
    diff: provider_pb2.DiffResponse | None
    state: State
    check_failures: tuple[tuple[str, str], ...] = ()


class ProviderEngine:
    def __init__(self, provider: ResourceProvider, *, env: Mapping[str, str] | None = None,
                 type_token: str = "pulumi-python:dynamic:Resource") -> None:
        self.provider_blob = serialize_provider(provider)
        self.type_token = type_token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulumi.dynamic"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})}, cwd="/")  # cwd=/: the class must come from the package
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"provider server did not start: {line!r} {err}")
        self.port = int(line)
        self.stderr_lines: list[str] = []  # the provider's progress/log lines (drained: never blocks)
        self._hooks: list[tuple[tuple[str, ...], Callable[[], None]]] = []
        self._hooks_lock = threading.Lock()
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        self.last_raw: struct_pb2.Struct | None = None
        self.calls: list[str] = []

    def __enter__(self) -> ProviderEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def when(self, *needles: str, action: Callable[[], None]) -> None:
        """Run ``action`` once, in the reader thread, when a provider log line contains every
        needle: fault injection at an exact point of a running operation (e.g. after staging)."""
        with self._hooks_lock:
            self._hooks.append((needles, action))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self.stderr_lines.append(line)
            with self._hooks_lock:
                due = [h for h in self._hooks if all(n in line for n in h[0])]
                for h in due:
                    self._hooks.remove(h)
            for _, action in due:
                action()

    # --- raw RPCs, as the engine sends them --------------------------------------------------------
    def urn(self, name: str) -> str:
        return f"urn:pulumi:test::test::{self.type_token}::{name}"

    def with_provider(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {**props, PROVIDER_KEY: self.provider_blob}

    def configure(self, config: Mapping[str, str] | None = None) -> provider_pb2.ConfigureResponse:
        self.calls.append("Configure")
        r: provider_pb2.ConfigureResponse = self.stub.Configure(provider_pb2.ConfigureRequest(
            variables=dict(config or {}), args=to_struct(dict(config or {})), acceptSecrets=True))
        return r

    def check(self, urn: str, olds: Mapping[str, Any], news: Mapping[str, Any]
              ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append("Check")
        r = self.stub.Check(provider_pb2.CheckRequest(urn=urn, olds=to_struct(olds), news=to_struct(news)))
        return from_struct(r.inputs), [(f.property, f.reason) for f in r.failures]

    def diff(self, urn: str, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any],
             old_inputs: Mapping[str, Any] | None = None) -> provider_pb2.DiffResponse:
        self.calls.append("Diff")
        r: provider_pb2.DiffResponse = self.stub.Diff(provider_pb2.DiffRequest(
            id=id_, urn=urn, olds=to_struct(olds), news=to_struct(news),
            old_inputs=to_struct(old_inputs or {})))
        return r

    def create(self, urn: str, props: Mapping[str, Any], timeout: float = 3600) -> tuple[str, dict[str, Any]]:
        self.calls.append("Create")
        r = self.stub.Create(provider_pb2.CreateRequest(urn=urn, properties=to_struct(props),
                                                        timeout=timeout))
        self.last_raw = r.properties
        return r.id, from_struct(r.properties)

    def update(self, urn: str, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any],
               old_inputs: Mapping[str, Any] | None = None, timeout: float = 3600) -> dict[str, Any]:
        self.calls.append("Update")
        r = self.stub.Update(provider_pb2.UpdateRequest(
            id=id_, urn=urn, olds=to_struct(olds), news=to_struct(news), timeout=timeout,
            old_inputs=to_struct(old_inputs or {})))
        self.last_raw = r.properties
        return from_struct(r.properties)

    def read(self, urn: str, id_: str, props: Mapping[str, Any], inputs: Mapping[str, Any]
             ) -> tuple[str, dict[str, Any]]:
        self.calls.append("Read")
        r = self.stub.Read(provider_pb2.ReadRequest(id=id_, urn=urn, properties=to_struct(props),
                                                    inputs=to_struct(inputs)))
        self.last_raw = r.properties
        return r.id, from_struct(r.properties)

    def delete(self, urn: str, id_: str, props: Mapping[str, Any]) -> None:
        self.calls.append("Delete")
        self.stub.Delete(provider_pb2.DeleteRequest(id=id_, urn=urn, properties=to_struct(props)))

    # --- engine-like steps -------------------------------------------------------------------------
    def register(self, name: str, inputs: Mapping[str, Any], *, state: State | None = None,
                 preview: bool = False, secret_inputs: tuple[str, ...] = (),
                 additional_secret_outputs: tuple[str, ...] = ()) -> Step:
        """``pulumi up`` (or ``preview``) of one resource: Check, Diff, then Create/Update.

        Unknown input values are given as ``UNKNOWN``; only allowed in preview.
        """
        urn = state.urn if state else self.urn(name)
        news = self.with_provider(inputs)
        checked, failures = self.check(urn, state.inputs if state else {}, news)
        if failures:
            return Step("check-failed", None, state or State(urn), tuple(failures))
        if state is None:
            if preview:
                return Step("preview-create", None, State(urn, inputs=checked))
            id_, outs = self.create(urn, checked)
            st = State(urn, id_, checked, outs, self._secrets(secret_inputs, additional_secret_outputs))
            return Step("create", None, st)
        d = self.diff(urn, state.id, state.outputs, checked, state.inputs)
        if d.changes != provider_pb2.DiffResponse.DIFF_SOME:
            return Step("same", d, state)
        if d.replaces:
            if preview:
                return Step("preview-replace", d, state)
            id_, outs = self.create(urn, checked)
            return Step("replace", d, State(urn, id_, checked, outs,
                                            self._secrets(secret_inputs, additional_secret_outputs)))
        if preview:
            return Step("preview-update", d, state)
        outs = self.update(urn, state.id, state.outputs, checked, state.inputs)
        st = State(urn, state.id, checked, outs, self._secrets(secret_inputs, additional_secret_outputs))
        return Step("update", d, st)

    def refresh(self, state: State) -> State:
        id_, outs = self.read(state.urn, state.id, state.outputs, state.inputs)
        return State(state.urn, id_, state.inputs, outs, state.secret_outputs)

    def _secrets(self, secret_inputs: tuple[str, ...], additional: tuple[str, ...]) -> set[str]:
        raw = secret_keys(self.last_raw) if self.last_raw is not None else set()
        return raw | set(secret_inputs) | set(additional)
