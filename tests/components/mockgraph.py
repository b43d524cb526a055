"""Run a Pulumi program under ``set_mocks`` and keep the resource graph it registered.

The SDK's mock monitor hands ``Mocks.new_resource`` only the type, name and inputs. Parents,
dependencies, secret markers and replacement options are what these tests are about, so the
monitor is subclassed to record the full ``RegisterResourceRequest`` of every resource.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc


def ignition_text(motd: str) -> str:
    """A raw Ignition 3.3.0 config (the compiler's simplest input)."""
    return json.dumps(
        {
            "ignition": {"version": "3.3.0"},
            "storage": {
                "files": [{"path": "/etc/motd", "overwrite": True, "contents": {"source": "data:," + motd}}]
            },
        }
    )


BUTANE = """variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/motd
      mode: 0644
      contents:
        inline: "{{ greeting }}\\n"
"""


REPROVISION_TYPE = "pulumi-python:dynamic/flatcar-infra:Reprovision"
LOCAL_OBJECT_TYPE = "pulumi-python:dynamic/flatcar-infra:LocalConfigObject"
DYNAMIC_PREFIX = "pulumi-python:dynamic/"


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: tuple[str, ...]
    property_dependencies: dict[str, tuple[str, ...]]
    inputs: dict[str, Any]  # secrets still wrapped (``rpc.is_rpc_secret``)
    delete_before_replace: bool
    replace_on_changes: tuple[str, ...]
    ignore_changes: tuple[str, ...]
    replacement_trigger: Any
    additional_secret_outputs: tuple[str, ...]
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def plain(self, key: str) -> Any:
        value = self.inputs.get(key)
        return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value

    def is_secret(self, key: str) -> bool:
        return rpc.is_rpc_secret(self.inputs.get(key))


class Graph:
    """What the program registered, in registration order."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def by_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registered:
        found = [r for r in self.by_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, got {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def parent_of(self, r: Registered) -> Registered | None:
        if not r.parent or r.parent.endswith("pulumi:pulumi:Stack::" + r.parent.split("::")[-1]):
            return None
        try:
            return self.by_urn(r.parent)
        except KeyError:
            return None

    def depends_on(self, r: Registered, other: Registered) -> bool:
        """Whether ``r`` directly depends on ``other`` (``depends_on`` or an input's Output)."""
        if other.urn in r.dependencies:
            return True
        return any(other.urn in deps for deps in r.property_dependencies.values())

    def types(self) -> list[str]:
        return [r.type for r in self.resources]


def _fake_ip(name: str) -> str:
    h = hashlib.sha256(name.encode()).digest()
    return f"203.0.113.{h[0] % 250 + 1}"


_HOST_KEYS: dict[str, tuple[str, str]] = {}


def generated_key(name: str) -> tuple[str, str]:
    """An ED25519 key per resource name, generated once per session like the tls provider keeps
    its key in state (an OpenSSH private key export is salted, so it is not derived)."""
    if name not in _HOST_KEYS:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        _HOST_KEYS[name] = (private, public.decode() + "\n")
    return _HOST_KEYS[name]


class FakeCloud(pulumi.runtime.Mocks):
    """Outputs the clouds would compute, deterministically from the inputs (no network).

    ``invokes`` overrides data-source results by token (e.g. the newest AMI after a release).
    """

    def __init__(
        self,
        graph: Graph,
        dynamic: Callable[[mocks.MockResourceArgs], dict[str, Any]] | None,
        invokes: dict[str, dict[str, Any]] | None = None,
    ):
        self.graph = graph
        self.dynamic = dynamic
        self.invokes = invokes or {}

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        t, name = args.typ, args.name
        rid = f"{name}-id"
        if t == "aws:s3/bucket:Bucket":
            state.setdefault("bucket", f"{name}-0123abcd")
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
            rid = state["bucket"]
        elif t == "aws:iam/role:Role":
            state.setdefault("name", f"{name}-7f3a")
            state["arn"] = f"arn:aws:iam::123456789012:role/{state['name']}"
            rid = state["name"]
        elif t == "aws:iam/instanceProfile:InstanceProfile":
            state.setdefault("name", f"{name}-9c1d")
            rid = state["name"]
        elif t == "aws:ec2/keyPair:KeyPair":
            state.setdefault("keyName", f"{name}-5e2b")
        elif t == "aws:ec2/instance:Instance":
            state["publicIp"] = _fake_ip(name)
            state["availabilityZone"] = "eu-central-1a"
            rid = "i-" + hashlib.sha256(name.encode()).hexdigest()[:17]
        elif t == "aws:ec2/eip:Eip":
            state["publicIp"] = _fake_ip(name + "-eip")
            rid = "eipalloc-" + name
        elif t == "random:index/randomId:RandomId":
            # Like the real provider: generated once per resource, not derived from anything else.
            raw = hashlib.sha256(("random:" + name).encode()).digest()[: int(state["byteLength"])]
            state["hex"] = raw.hex()
        elif t == "digitalocean:index/customImage:CustomImage":
            state["imageId"] = 123456
            rid = "123456"
        elif t == "digitalocean:index/droplet:Droplet":
            state["ipv4Address"] = _fake_ip(name)
            rid = str(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
        elif t == "digitalocean:index/reservedIp:ReservedIp":
            state["ipAddress"] = _fake_ip(name + "-reserved")
            rid = state["ipAddress"]
        elif t == "digitalocean:index/spacesBucket:SpacesBucket":
            state.setdefault("name", f"{name}-1a2b3c")
        elif t == "digitalocean:index/sshKey:SshKey":
            state["fingerprint"] = "aa:bb:cc"
        elif t == "tls:index/privateKey:PrivateKey":
            private, public = generated_key(name)
            state.update(privateKeyOpenssh=private, publicKeyOpenssh=public)
        elif t.startswith(DYNAMIC_PREFIX) and self.dynamic is not None:
            out = self.dynamic(args)
            rid = out.pop("__id", rid)
            state = out
        elif t == LOCAL_OBJECT_TYPE:
            state["url"] = f"http://10.0.2.100/flatcar-infra-configs/local/{state['machine']}/config.ign"
            state["sha512"] = hashlib.sha512(str(state["content"]).encode()).hexdigest()
        elif t == REPROVISION_TYPE:
            state["host_key"] = state.get("host_key") or "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKey"
            state["applied_hash"] = state.get("config_hash")
        return rid, state

    def call(self, args: mocks.MockCallArgs) -> Any:
        self.graph.invokes.append((args.token, dict(args.args)))
        if args.token in self.invokes:
            return dict(self.invokes[args.token])
        if args.token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args.args["id"], "availabilityZone": "eu-central-1b"}
        if args.token == "aws:ec2/getKeyPair:getKeyPair":
            return {
                "keyName": args.args["keyName"],
                "publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlatformKey",
            }
        if args.token == "aws:ec2/getAmi:getAmi":
            return {
                "id": "ami-0flatcar" + args.args["filters"][1]["values"][0].replace("_", ""),
                "name": "Flatcar-stable-4593.1.0-hvm",
            }
        return {}


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, fake: FakeCloud, graph: Graph) -> None:
        super().__init__(fake)
        self.graph = graph

    def RegisterResource(self, request: Any) -> Any:
        resp = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return resp
        trigger = None
        if request.HasField("replacement_trigger"):
            trigger = rpc.deserialize_property(
                json.loads(json.dumps(_value_to_py(request.replacement_trigger)))
            )
        self.graph.resources.append(
            Registered(
                urn=resp.urn,
                type=request.type,
                name=request.name,
                custom=request.custom,
                parent=request.parent,
                dependencies=tuple(request.dependencies),
                property_dependencies={k: tuple(v.urns) for k, v in request.propertyDependencies.items()},
                inputs=rpc.deserialize_properties(request.object),
                delete_before_replace=request.deleteBeforeReplace,
                replace_on_changes=tuple(request.replaceOnChanges),
                ignore_changes=tuple(request.ignoreChanges),
                replacement_trigger=trigger,
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                outputs=self.resources[resp.urn].state,
                id=resp.id,
            )
        )
        return resp


def _value_to_py(value: Any) -> Any:
    from google.protobuf import json_format

    return json_format.MessageToDict(value)


def _quiet_unretrieved(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A failing program leaves sibling Outputs holding the same error; ``run_program`` already
    raised it, so their "exception was never retrieved" reports at shutdown are only noise."""
    if "never retrieved" not in str(context.get("message", "")):
        loop.default_exception_handler(context)


def run_program(
    program: Callable[[], Any],
    *,
    project: str = "flatcar-infra",
    stack: str = "test",
    config: dict[str, Any] | None = None,
    secret_keys: list[str] | None = None,
    preview: bool = False,
    dynamic: Callable[[mocks.MockResourceArgs], dict[str, Any]] | None = None,
    invokes: dict[str, dict[str, Any]] | None = None,
) -> Graph:
    """Run ``program`` to completion under mocks; return every registration.

    ``config`` values that are not strings are JSON-encoded, as the CLI passes them.
    """
    # asyncio.run() (the SSH helpers) leaves the main thread without a loop; the SDK needs one.
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_quiet_unretrieved)
    asyncio.set_event_loop(loop)
    graph = Graph()
    fake = FakeCloud(graph, dynamic, invokes)
    monitor = RecordingMonitor(fake, graph)
    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in (config or {}).items()},
        secret_keys or [],
    )
    pulumi.runtime.set_mocks(fake, project=project, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
    return graph
