"""What the S3 tests share: the S3-compatible server (S3Proxy, started by
compose/s3/s3-up.sh; ``make test`` starts it and sets ``STREAMKIT_TEST_S3``)."""

from __future__ import annotations

import os
from typing import Any

import pytest

S3_ENV = "STREAMKIT_TEST_S3"
SKIP_REASON = (
    f"{S3_ENV} is not set: start the S3 server with compose/s3/s3-up.sh and set "
    f"{S3_ENV}=http://127.0.0.1:9000 (`make test` does both)"
)


def s3_param() -> Any:
    """The ``"s3"`` param of a destination fixture, skipped (saying why) without a server."""
    marks = [] if os.environ.get(S3_ENV) else [pytest.mark.skip(reason=SKIP_REASON)]
    return pytest.param("s3", id="s3", marks=marks)


def client() -> Any:
    """A boto3 S3 client for the test server (checksums only where S3 requires them)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ[S3_ENV],
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
