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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import mocks, rpc
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
    checked: dict[str, Any] | None = None  # the inputs as Check returned them


class ProviderEngine:
    def __init__(self, provider: ResourceProvider | None = None, *, env: Mapping[str, str] | None = None,
                 type_token: str = "pulumi-python:dynamic:Resource") -> None:
        # None: the program's resources carry their own ``__provider`` (``Deployment``)
        self.provider_blob = serialize_provider(provider) if provider is not None else None
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
        if PROVIDER_KEY in props and self.provider_blob is None:
            return dict(props)
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
                 additional_secret_outputs: tuple[str, ...] = (), urn: str | None = None) -> Step:
        """``pulumi up`` (or ``preview``) of one resource: Check, Diff, then Create/Update.

        Unknown input values are given as ``UNKNOWN``; only allowed in preview.
        """
        urn = state.urn if state else (urn or self.urn(name))
        news = self.with_provider(inputs)
        checked, failures = self.check(urn, state.inputs if state else {}, news)
        if failures:
            return Step("check-failed", None, state or State(urn), tuple(failures), checked)
        if state is None:
            if preview:
                return Step("preview-create", None, State(urn, inputs=checked), (), checked)
            id_, outs = self.create(urn, checked)
            st = State(urn, id_, checked, outs, self._secrets(secret_inputs, additional_secret_outputs))
            return Step("create", None, st, (), checked)
        d = self.diff(urn, state.id, state.outputs, checked, state.inputs)
        if d.changes != provider_pb2.DiffResponse.DIFF_SOME:
            return Step("same", d, state, (), checked)
        if d.replaces:
            if preview:
                return Step("preview-replace", d, state, (), checked)
            id_, outs = self.create(urn, checked)
            st = State(urn, id_, checked, outs, self._secrets(secret_inputs, additional_secret_outputs))
            return Step("replace", d, st, (), checked)
        if preview:
            return Step("preview-update", d, state, (), checked)
        outs = self.update(urn, state.id, state.outputs, checked, state.inputs)
        st = State(urn, state.id, checked, outs, self._secrets(secret_inputs, additional_secret_outputs))
        return Step("update", d, st, (), checked)

    def refresh(self, state: State) -> State:
        id_, outs = self.read(state.urn, state.id, state.outputs, state.inputs)
        return State(state.urn, id_, state.inputs, outs, state.secret_outputs)

    def _secrets(self, secret_inputs: tuple[str, ...], additional: tuple[str, ...]) -> set[str]:
        raw = secret_keys(self.last_raw) if self.last_raw is not None else set()
        return raw | set(secret_inputs) | set(additional)


# --- whole deployments: the program, the engine's scheduling, the real provider server ------------

@dataclass
class Stack:
    """What the engine keeps between deployments: the checkpoint (last good state per URN) and
    the stack config (``project:key`` → value, as in ``Pulumi.<stack>.yaml``)."""

    resources: dict[str, State] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    name: str = "test"
    project: str = "flatcar-infra"

    def by_name(self, name: str) -> State:
        found = [st for urn, st in self.resources.items() if urn.endswith(f"::{name}")]
        assert len(found) == 1, f"{name}: {len(found)} resources"
        return found[0]


@dataclass
class StepRecord:
    urn: str
    name: str
    op: str  # a Step op, or "failed" | "skipped" | "not-started" | "component"
    started: float  # time.monotonic()
    finished: float
    error: str | None = None
    inputs: dict[str, Any] | None = None  # as Check returned them (what a preview diff shows)


@dataclass
class Deployment:
    """One ``pulumi up`` (or ``preview``): every step, the program's error, the provider's log."""

    steps: list[StepRecord]
    error: BaseException | None
    provider_log: list[str]
    preview: bool

    def step(self, name: str) -> StepRecord:
        found = [s for s in self.steps if s.name == name]
        assert len(found) == 1, f"{name}: {[(s.name, s.op) for s in self.steps]}"
        return found[0]

    @property
    def failed(self) -> list[StepRecord]:
        return [s for s in self.steps if s.op in ("failed", "check-failed")]

    @property
    def ok(self) -> bool:
        return not self.failed and self.error is None

    def peak_parallel(self, names: set[str] | None = None) -> int:
        """The most provider operations of these resources that ran at the same time."""
        events: list[tuple[float, int]] = []
        for s in self.steps:
            if s.op in ("create", "update", "replace", "failed") and (names is None or s.name in names):
                events += [(s.started, 1), (s.finished, -1)]
        peak = cur = 0
        for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
            cur += delta
            peak = max(peak, cur)
        return peak


_NOT_DONE = ("failed", "check-failed", "skipped", "not-started")


class _Halted(Exception):
    """What the program sees for a resource the engine did not (or could not) step."""


class _EngineMonitor(mocks.MockMonitor):
    """The resource monitor the program talks to, scheduling steps as the engine does:

    - a step starts only after the steps of every dependency (``depends_on`` and the resources
      whose outputs are inputs) finished; at most ``parallel`` steps run at once (the provider
      process adds its own limit: 4 worker threads);
    - after a failed step no new step starts (running ones finish), unless ``continue_on_error``,
      which skips only the dependents of a failure (transitively);
    - a failed update keeps the old state; a failed create leaves none;
    - preview runs Check and Diff only, and hands the program the checked inputs (outputs that are
      not inputs stay unknown).
    """

    def __init__(self, engine: ProviderEngine, stack: Stack, *, preview: bool, parallel: int,
                 continue_on_error: bool) -> None:
        super().__init__(_NoMocks())
        self.engine, self.stack, self.preview = engine, stack, preview
        self.continue_on_error = continue_on_error
        self.sem = threading.Semaphore(parallel)
        self.lock = threading.Lock()
        self.done: dict[str, threading.Event] = {}
        self.status: dict[str, str] = {}
        self.halted = False
        self.steps: list[StepRecord] = []

    def _record(self, urn: str, name: str, op: str, t0: float, error: str | None = None,
                inputs: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.steps.append(StepRecord(urn, name, op, t0, time.monotonic(), error, inputs))
            self.status[urn] = op
            self.done.setdefault(urn, threading.Event()).set()

    def _unchanged(self, urn: str) -> Any:
        """The old state (or nothing) for a resource that was not stepped."""
        from pulumi.runtime.proto import resource_pb2

        st = self.stack.resources.get(urn)
        outs = {k: v for k, v in (st.outputs if st else {}).items() if k != PROVIDER_KEY}
        return resource_pb2.RegisterResourceResponse(urn=urn, id=st.id if st else "", object=to_struct(outs))

    def RegisterResource(self, request: Any) -> Any:
        from pulumi.runtime.proto import resource_pb2

        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        with self.lock:
            self.done.setdefault(urn, threading.Event())
        deps = set(request.dependencies) | {u for v in request.propertyDependencies.values() for u in v.urns}
        for d in deps:
            with self.lock:
                ev = self.done.get(d)
            if ev is not None:
                ev.wait()
        t0 = time.monotonic()
        if not request.custom:
            self._record(urn, request.name, "component", t0)
            self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, "", {})
            return resource_pb2.RegisterResourceResponse(urn=urn, id="", object=struct_pb2.Struct())
        if not request.type.startswith("pulumi-python:dynamic"):
            self._record(urn, request.name, "failed", t0, "the test engine drives dynamic resources only")
            raise _Halted(f"{request.type}: the test engine drives dynamic resources only")
        with self.lock:
            bad = [d for d in deps if self.status.get(d) in _NOT_DONE]
            halted = self.halted
        if bad and self.continue_on_error:
            self._record(urn, request.name, "skipped", t0, f"depends on {bad[0]}, which did not succeed")
            return self._unchanged(urn)
        if (halted and not self.continue_on_error) or bad:
            self._record(urn, request.name, "not-started", t0, "the deployment is halting after a failure")
            raise _Halted(f"{request.name}: not started (the deployment is halting after a failure)")
        raw = rpc.deserialize_properties(request.object, keep_unknowns=True)
        secret_inputs = tuple(k for k, v in raw.items() if rpc.is_rpc_secret(v))
        inputs = {k: rpc.unwrap_rpc_secret(v) for k, v in raw.items()}
        with self.sem:
            t0 = time.monotonic()
            try:
                step = self.engine.register(request.name, inputs, state=self.stack.resources.get(urn),
                                            preview=self.preview, secret_inputs=secret_inputs,
                                            additional_secret_outputs=tuple(request.additionalSecretOutputs),
                                            urn=urn)
            except grpc.RpcError as exc:
                detail = exc.details() or str(exc)  # type: ignore[attr-defined]
                with self.lock:
                    self.halted = True
                self._record(urn, request.name, "failed", t0, detail)
                if self.continue_on_error:
                    return self._unchanged(urn)  # the program goes on; dependents are skipped
                raise _Halted(f"{request.name}: {detail}") from None
        if step.op == "check-failed":
            with self.lock:
                self.halted = True
            why = "; ".join(f"{p}: {r}" for p, r in step.check_failures)
            self._record(urn, request.name, "check-failed", t0, why)
            raise _Halted(f"{request.name}: check failed: {step.check_failures}")
        if not self.preview:
            self.stack.resources[urn] = step.state
        if self.preview and step.op.startswith("preview-"):
            outputs = dict(step.checked or {})
            secret = set(secret_inputs)
        else:
            outputs = dict(step.state.outputs)
            secret = set(step.state.secret_outputs) | set(secret_inputs)
        outputs.pop(PROVIDER_KEY, None)
        wrapped = {k: rpc.wrap_rpc_secret(v) if k in secret else v for k, v in outputs.items()}
        self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, step.state.id, wrapped)
        self._record(urn, request.name, step.op, t0, inputs=step.checked)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=step.state.id or "",
                                                     object=to_struct(wrapped))


class _NoMocks(mocks.Mocks):
    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        raise AssertionError(f"{args.typ}: every resource is stepped by the engine")

    def call(self, args: mocks.MockCallArgs) -> Any:
        raise AssertionError(f"{args.token}: invokes are not supported by the test engine")


def deploy(program: Callable[[], None], stack: Stack, *, preview: bool = False, parallel: int = 64,
           continue_on_error: bool = False, env: Mapping[str, str] | None = None) -> Deployment:
    """Run ``program`` as ``pulumi up`` (``preview``) does against ``stack``'s checkpoint.

    A new provider process per deployment (the engine starts one per ``pulumi up``), configured
    first with the whole stack config. The program's thread pool is as large as ``parallel``
    (the language host sizes it so), so the engine's limit, not the SDK's, applies.
    """
    import concurrent.futures

    import pulumi

    loop = asyncio.new_event_loop()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=parallel)
    loop.set_default_executor(executor)
    loop.set_exception_handler(lambda _loop, _ctx: None)  # failed outputs nobody awaited: expected
    asyncio.set_event_loop(loop)
    error: BaseException | None = None
    with ProviderEngine(env=env) as engine:
        engine.configure(stack.config)
        monitor = _EngineMonitor(engine, stack, preview=preview, parallel=parallel,
                                 continue_on_error=continue_on_error)
        pulumi.runtime.set_all_config(dict(stack.config), [])
        pulumi.runtime.set_mocks(_NoMocks(), project=stack.project, stack=stack.name, preview=preview,
                                 monitor=monitor)
        try:
            pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
        except Exception as exc:  # the program's failure, as `pulumi up` reports it
            error = exc
        executor.shutdown(wait=True)  # steps already running finish, as in the engine
        log = list(engine.stderr_lines)
    steps = sorted(monitor.steps, key=lambda s: s.started)
    return Deployment(steps, error, log, preview)
