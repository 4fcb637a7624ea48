"""Object storage as a Dagster resource: one interface, a local folder or S3."""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
from dagster_aws.s3 import S3Resource

from my_data_platform.core.events import LandingLimits
from my_data_platform.core.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore


class ObjectStoreResource(dg.ConfigurableResource, ABC):
    """Where raw payloads and lake files live. Assets call :meth:`get_store`.

    It also carries the limits on what a landed object may cost to read (from settings).
    """

    landing_max_inflated_bytes: int = LandingLimits.max_inflated_bytes
    landing_max_line_bytes: int = LandingLimits.max_line_bytes

    @abstractmethod
    def get_store(self) -> ObjectStore: ...

    def landing_limits(self) -> LandingLimits:
        return LandingLimits(self.landing_max_inflated_bytes, self.landing_max_line_bytes)


class LocalObjectStoreResource(ObjectStoreResource):
    """The embedded default: a folder (``$MDP_DATA_DIR/lake``)."""

    root: str

    def get_store(self) -> ObjectStore:
        return LocalObjectStore(self.root)


class S3ObjectStoreResource(ObjectStoreResource):
    """S3 or an S3-compatible endpoint, through dagster-aws's ``S3Resource``."""

    bucket: str
    prefix: str = ""
    s3: S3Resource

    def get_store(self) -> ObjectStore:
        creds = {}
        if self.s3.aws_access_key_id:
            creds = {
                "aws_access_key_id": self.s3.aws_access_key_id,
                "aws_secret_access_key": self.s3.aws_secret_access_key or "",
            }
        return S3ObjectStore(
            self.s3.get_client(),
            self.bucket,
            self.prefix,
            endpoint_url=self.s3.endpoint_url,
            region=self.s3.region_name or "us-east-1",
            credentials=creds,
        )


def object_store_resource_from_settings() -> ObjectStoreResource:
    """Build the configured implementation; secrets stay ``EnvVar``s until run time."""
    from my_data_platform.settings import SettingsError, get_settings

    s = get_settings()
    limits = {
        "landing_max_inflated_bytes": s.landing_max_inflated_bytes,
        "landing_max_line_bytes": s.landing_max_line_bytes,
    }
    if s.object_store == "local":
        return LocalObjectStoreResource(root=str(s.lake_root), **limits)
    s3_kwargs: dict = {"region_name": s.s3_region}
    if s.s3_endpoint_url:
        s3_kwargs["endpoint_url"] = s.s3_endpoint_url
    if "AWS_ACCESS_KEY_ID" in s.secrets_set:  # else boto3's own chain (profile, role)
        if "AWS_SECRET_ACCESS_KEY" not in s.secrets_set:
            raise SettingsError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        s3_kwargs["aws_access_key_id"] = s.secret("AWS_ACCESS_KEY_ID")
        s3_kwargs["aws_secret_access_key"] = s.secret("AWS_SECRET_ACCESS_KEY")
    return S3ObjectStoreResource(
        bucket=s.s3_bucket or "", prefix=s.s3_prefix, s3=S3Resource(**s3_kwargs), **limits
    )


def object_store_from_settings() -> ObjectStore:
    """The configured store for code outside a run (CLI, sensors, tests): EnvVars resolved."""
    with dg.build_resources({"object_store": object_store_resource_from_settings()}) as res:
        return res.object_store.get_store()


@dg.definitions
def resources() -> dg.Definitions:
    """Registered when Dagster loads the code location, so settings are never read at import."""
    return dg.Definitions(resources={"object_store": object_store_resource_from_settings()})
