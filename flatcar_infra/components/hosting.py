"""Config hosting: the real config in a bucket object, a never-changing pointer in user-data.

DigitalOcean cannot change a droplet's user-data and EC2 only with a stop/start (16 KB max), so
the user-data is a pointer to a stable object URL. The pointer is built only from the bucket and
the key, never from the config or its hash: two different configs give byte-identical user-data,
so a config change never replaces the instance. The ``Reprovision`` resource then applies the new
object content in place.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_digitalocean as digitalocean
import pulumi_random as random

from flatcar_infra.canonical import canonical_bytes

POINTER_VERSION = "3.3.0"
"""Ignition spec of the pointer: understood by every Flatcar still supported (LTS included)."""

OBJECT_NAME = "config.ign"


def pointer_config(source: str) -> str:
    """The user-data: an Ignition config that replaces itself with the one at ``source``."""
    doc = {"ignition": {"version": POINTER_VERSION, "config": {"replace": {"source": source}}}}
    return canonical_bytes(doc).decode("utf-8")


def s3_object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def get_object_policy(bucket: str, key: str) -> str:
    """IAM policy allowing ``s3:GetObject`` on exactly one object (no wildcard, no listing)."""
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": s3_object_arn(bucket, key)}],
    }
    return json.dumps(doc, sort_keys=True)


EC2_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}}
        ],
    },
    sort_keys=True,
)


class AwsConfigBucket(pulumi.ComponentResource):
    """A private S3 bucket for configs: all public access blocked, encrypted at rest (SSE-S3)."""

    bucket: pulumi.Output[str]

    def __init__(self, name: str, *, force_destroy: bool = True, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:aws:ConfigBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=force_destroy, opts=child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                )
            ],
            opts=child,
        )
        self.bucket_resource = bucket
        # Consumers depend on the name *after* the protections exist: no object is ever written to
        # a bucket that is still public or unencrypted.
        self.bucket = pulumi.Output.all(bucket.bucket, self.public_access_block.id, self.encryption.id).apply(
            lambda a: str(a[0])
        )
        self.register_outputs({"bucket": self.bucket})


class AwsConfigHosting(pulumi.ComponentResource):
    """One machine's config in S3, and the instance profile that may read exactly that object.

    Ignition fetches ``s3://bucket/key`` with the instance role's credentials, so the bucket stays
    private; the role can read this one object and nothing else.
    """

    pointer: pulumi.Output[str]
    instance_profile: pulumi.Output[str]
    source: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        bucket: pulumi.Input[str],
        key: str,
        content: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("flatcar-infra:aws:ConfigHosting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = key
        self.object = aws.s3.BucketObjectv2(
            f"{name}-config",
            bucket=bucket,
            key=key,
            content=content,
            content_type="application/json",
            server_side_encryption="AES256",
            opts=child,
        )
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=EC2_ASSUME_ROLE_POLICY, opts=child)
        self.policy = aws.iam.RolePolicy(
            f"{name}-read-config",
            role=self.role.id,
            policy=pulumi.Output.from_input(bucket).apply(lambda b: get_object_policy(b, key)),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(
            f"{name}-profile",
            role=self.role.name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy]),
        )
        self.profile = profile
        self.instance_profile = profile.name
        self.source = pulumi.Output.from_input(bucket).apply(lambda b: f"s3://{b}/{key}")
        self.pointer = self.source.apply(pointer_config)
        self.register_outputs(
            {"pointer": self.pointer, "source": self.source, "instance_profile": self.instance_profile}
        )


class DigitalOceanConfigHosting(pulumi.ComponentResource):
    """One machine's config as a Spaces object at an unguessable, stable key, public over https.

    Ignition cannot authenticate to Spaces (``s3://`` is AWS-only, a presigned URL expires within
    7 days), so the object is ``public-read`` and the 128-bit random key is its only protection:
    anyone who learns the URL can read the config. Keep secrets out of it (pull them at boot from
    a secret store) or accept that the URL is a bearer token. The key is generated once and kept in
    state, so it never changes with the config.
    """

    pointer: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        bucket: pulumi.Input[str],
        region: pulumi.Input[str],
        content: pulumi.Input[str],
        allow_secrets: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("flatcar-infra:digitalocean:ConfigHosting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        content = _refuse_secret(name, pulumi.Output.from_input(content), allow_secrets)
        self.key_id = random.RandomId(f"{name}-key", byte_length=16, opts=child)
        self.key = self.key_id.hex.apply(lambda h: f"flatcar-infra/{h}/{OBJECT_NAME}")
        self.object = digitalocean.SpacesBucketObject(
            f"{name}-config",
            bucket=bucket,
            region=region,
            key=self.key,
            content=content,
            content_type="application/json",
            acl="public-read",
            opts=child,
        )
        self.url = pulumi.Output.all(bucket, region, self.key).apply(
            lambda a: f"https://{a[0]}.{a[1]}.digitaloceanspaces.com/{a[2]}"
        )
        self.pointer = self.url.apply(pointer_config)
        self.register_outputs({"pointer": self.pointer, "url": self.url})


def _refuse_secret(name: str, content: pulumi.Output[str], allow: bool) -> pulumi.Output[str]:
    """Fail before uploading a secret config to a world-readable object, unless explicitly allowed.

    The check is chained into the content itself, so the object cannot be written without it.
    """
    is_secret: pulumi.Output[bool] = pulumi.Output.from_input(content._is_secret)

    def check(args: list[Any]) -> str:
        if args[1] and not allow:
            raise pulumi.RunError(
                f"{name}: the config holds a secret, but DigitalOcean Spaces objects read by Ignition "
                "are public (the random key is the only protection). Keep secrets out of the config "
                "(fetch them at boot from a secret store), or set allow_secrets=True to accept that "
                "the object URL is a bearer token."
            )
        return str(args[0])

    return pulumi.Output.all(content, is_secret).apply(check)
