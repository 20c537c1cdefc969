"""AWS credentials and SigV4 signing for Bedrock, done by botocore (never by hand).

A deployment's credentials come from LiteLLM's parameter names; what it leaves unset comes from
botocore's own chain (environment, shared config and credentials files, web identity, container
and instance metadata). An assumed role's credentials are cached per (role, session, source) and
refreshed by botocore before they expire, so no call waits on STS but the first after expiry
nears. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from dheera_ai.errors import AuthenticationError, BadRequestError

PARAMS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name", "aws_role_name",
          "aws_session_name", "aws_profile_name", "aws_web_identity_token", "aws_sts_endpoint", "aws_external_id")
_cache: dict = {}
_lock = threading.Lock()


def region(params: dict) -> str:
    """`aws_region_name`, else the environment's or the profile's region: never a guess."""
    value = params.get("aws_region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not value:
        value = _session(params.get("aws_profile_name")).get_config_variable("region")
    if not value:
        raise BadRequestError("Bedrock needs a region: set aws_region_name in the deployment's params "
                              "(or AWS_REGION on the gateway).", code="missing_aws_region", provider="bedrock")
    return value


def credentials(params: dict):
    """botocore credentials for these params, made once and kept (refreshing ones refresh themselves)."""
    key = tuple(params.get(name) for name in PARAMS)
    found = _cache.get(key)
    if found is None:
        with _lock:
            found = _cache.get(key)
            if found is None:
                found = _cache[key] = _resolve(params)
    return found


def signed_headers(method: str, url: str, body: bytes, headers: dict, params: dict, service: str = "bedrock") -> dict:
    """`headers` plus SigV4's (X-Amz-Date, X-Amz-Security-Token, Authorization) for this request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        frozen = credentials(params).get_frozen_credentials()
    except (BotoCoreError, ClientError) as exc:  # a refresh that failed (STS down, role revoked)
        raise AuthenticationError(f"bedrock: could not refresh the AWS credentials ({_reason(exc)})",
                                  code="aws_credentials_refresh_failed", provider="bedrock") from None
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(frozen, service, region(params)).add_auth(request)
    return dict(request.headers.items())


def _session(profile: str | None = None):
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    try:
        return botocore.session.Session(profile=profile)
    except ProfileNotFound:
        raise AuthenticationError(f"bedrock: the AWS profile '{profile}' is not configured on the gateway",
                                  code="missing_provider_credentials", provider="bedrock") from None


def _resolve(params: dict):
    from botocore.credentials import Credentials
    from botocore.exceptions import BotoCoreError

    if params.get("aws_web_identity_token") and params.get("aws_role_name"):
        return _assumed(params, None)
    if params.get("aws_access_key_id") and params.get("aws_secret_access_key"):
        source = Credentials(params["aws_access_key_id"], params["aws_secret_access_key"],
                             params.get("aws_session_token"), method="explicit")
    else:
        try:
            source = _session(params.get("aws_profile_name")).get_credentials()
        except BotoCoreError as exc:
            raise AuthenticationError(f"bedrock: the AWS credential chain failed ({_reason(exc)})",
                                      code="missing_provider_credentials", provider="bedrock") from None
        if source is None:
            raise AuthenticationError(
                "bedrock: no AWS credentials: set aws_access_key_id/aws_secret_access_key, aws_profile_name or "
                "aws_role_name in the deployment's params, or give the gateway AWS credentials "
                "(environment, ~/.aws, web identity, instance role).", code="missing_provider_credentials",
                provider="bedrock")
    return _assumed(params, source) if params.get("aws_role_name") else source


def _assumed(params: dict, source):
    """RefreshableCredentials for `aws_role_name`: AssumeRole from `source`, or
    AssumeRoleWithWebIdentity when `source` is None; botocore refreshes them ahead of expiry."""
    from botocore.credentials import RefreshableCredentials

    client = _sts_client(params, source)
    role, session_name = params["aws_role_name"], params.get("aws_session_name") or "dheera-ai"

    def fetch() -> dict:
        if source is None:
            answer = client.assume_role_with_web_identity(RoleArn=role, RoleSessionName=session_name,
                                                          WebIdentityToken=params["aws_web_identity_token"])
        else:
            extra = {"ExternalId": params["aws_external_id"]} if params.get("aws_external_id") else {}
            answer = client.assume_role(RoleArn=role, RoleSessionName=session_name, **extra)
        found = answer["Credentials"]
        expiry = found["Expiration"]
        if isinstance(expiry, datetime):
            expiry = expiry.astimezone(UTC).isoformat()
        return {"access_key": found["AccessKeyId"], "secret_key": found["SecretAccessKey"],
                "token": found["SessionToken"], "expiry_time": expiry}

    try:
        return RefreshableCredentials.create_from_metadata(fetch(), fetch, method="assume-role")
    except Exception as exc:  # noqa: BLE001 - botocore's ClientError, EndpointConnectionError, ParamValidationError, ...
        raise AuthenticationError(f"bedrock: could not assume the role {role} ({_reason(exc)})",
                                  code="aws_assume_role_failed", provider="bedrock") from None


def _sts_client(params: dict, source):
    import botocore
    from botocore.config import Config

    options = {"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 2}}
    if source is None:
        options["signature_version"] = botocore.UNSIGNED  # web identity: the token is the proof
    sts_region = params.get("aws_region_name") or os.environ.get("AWS_REGION") or "us-east-1"
    kwargs = {"region_name": sts_region, "config": Config(**options)}
    if params.get("aws_sts_endpoint"):
        kwargs["endpoint_url"] = params["aws_sts_endpoint"]
    if source is not None:
        frozen = source.get_frozen_credentials()
        kwargs.update(aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key,
                      aws_session_token=frozen.token)
    return _session(params.get("aws_profile_name")).create_client("sts", **kwargs)


def _reason(exc: Exception) -> str:
    from dheera_ai.redact import redact

    return redact(str(exc))[:300]
