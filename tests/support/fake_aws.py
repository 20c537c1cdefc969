"""What a fake Bedrock and a fake STS need: SigV4 checked the way AWS checks it (botocore computes
the signature the request should carry from the known secret), and AWS's event-stream framing.

The encoder here is the test's own, written from the documented framing (prelude with total and
headers length and its CRC32, headers, payload, message CRC32); the gateway reads the frames with
botocore's parser, so a mistake on either side fails the tests.
"""

from __future__ import annotations

import binascii
import hmac
import json
import struct
import time
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "AKIDEXAMPLEDHEERA01"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


class SignatureError(AssertionError):
    pass


def check_sigv4(recorded, base_url: str, secrets: dict, service: str = "bedrock", region: str = REGION) -> str:
    """The access key id of a correctly signed request; `SignatureError` (AWS's 403) otherwise.

    `secrets` maps access key ids to (secret, session token or None)."""
    auth = recorded.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        raise SignatureError("not SigV4")
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key_id, day, signed_region, signed_service, terminator = fields["Credential"].split("/")
    if key_id not in secrets:
        raise SignatureError(f"unknown access key {key_id}")
    secret, token = secrets[key_id]
    if (signed_region, signed_service, terminator) != (region, service, "aws4_request"):
        raise SignatureError(f"scope {signed_region}/{signed_service}")
    stamp = recorded.headers["x-amz-date"]
    skew = abs(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp() - time.time())
    if skew > 300 or not stamp.startswith(day):
        raise SignatureError("request time too skewed")
    if token is not None and recorded.headers.get("x-amz-security-token") != token:
        raise SignatureError("session token missing or wrong")
    names = fields["SignedHeaders"].split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise SignatureError("host and x-amz-date must be signed")
    request = AWSRequest(method=recorded.method, url=base_url + recorded.path, data=recorded.body,
                         headers={n: recorded.headers[n] for n in names})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise SignatureError("signature does not match")
    return key_id


def frame(headers: dict, payload: bytes) -> bytes:
    """One event-stream message; every header a string (type 7)."""
    encoded = b""
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        encoded += struct.pack(">B", len(name_bytes)) + name_bytes + b"\x07" + struct.pack(">H", len(value_bytes)) \
            + value_bytes
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def event(event_type: str, payload: dict) -> bytes:
    return frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(payload).encode())


def exception(exception_type: str, message: str) -> bytes:
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, json.dumps({"message": message}).encode())


def assume_role_answer(key_id: str, secret: str, token: str, expires_in: float) -> bytes:
    expiry = datetime.fromtimestamp(time.time() + expires_in, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials><AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken><Expiration>{expiry}</Expiration></Credentials>
    <AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:dheera</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock/dheera</Arn></AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>""".encode()


class FakeBedrock:
    """Bedrock Runtime on a `FakeUpstream`: each request's signature is checked first (a 403
    `InvalidSignatureException` as AWS answers when it is wrong), then the next scripted answer."""

    def __init__(self, upstream, secrets=None, bearer_tokens=()):
        from tests.support.fake_upstream import Script

        self._script = Script
        self.upstream = upstream
        self.url = upstream.url
        self.secrets = dict(secrets or {ACCESS_KEY: (SECRET_KEY, None)})
        self.bearer_tokens = set(bearer_tokens)
        self.answers: list = []
        self.signed_by: list = []  # the access key id (or "bearer") of each accepted request

    def serve(self, model_id: str) -> None:
        from urllib.parse import quote

        for operation in ("converse", "converse-stream", "invoke", "invoke-with-response-stream"):
            self.upstream.route(f"/model/{quote(model_id, safe='')}/{operation}", self._handle)

    def respond(self, body: dict, status: int = 200, error_type: str | None = None, headers=None) -> None:
        headers = dict(headers or {})
        if error_type:
            headers["x-amzn-ErrorType"] = f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        self.answers.append(self._script(status=status, body=json.dumps(body).encode(), headers=headers))

    def stream(self, frames: list[bytes], piece: int = 0) -> None:
        """An event stream; `piece` > 0 cuts it into pieces of that many bytes (frames split across reads)."""
        data = b"".join(frames)
        chunks = [data[i:i + piece] for i in range(0, len(data), piece)] if piece else frames
        self.answers.append(self._script(chunks=chunks, headers={"Content-Type": "application/vnd.amazon.eventstream"}))

    def _handle(self, recorded):
        auth = recorded.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if auth[7:] not in self.bearer_tokens:
                return self._refuse("UnrecognizedClientException",
                                    "The security token included in the request is invalid.")
            self.signed_by.append("bearer")
        else:
            try:
                self.signed_by.append(check_sigv4(recorded, self.url, self.secrets))
            except SignatureError as exc:
                return self._refuse("InvalidSignatureException", f"Signature check failed: {exc}")
        return self.answers.pop(0)

    def _refuse(self, error_type: str, message: str):
        return self._script(status=403, body=json.dumps({"message": message}).encode(),
                            headers={"x-amzn-ErrorType": error_type})
