"""A Google service account made in the test and a fake OAuth token endpoint that verifies the
JWT google-auth signs with it (signature, issuer, audience, scope, times), as Google's does."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse

from tests.support.fake_upstream import FakeUpstream, Script

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CLIENT_EMAIL = "gateway@dheera-test.iam.gserviceaccount.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


def rsa_key_pair() -> tuple[str, str]:
    """(private key PEM, public key PEM), made now."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class FakeTokenEndpoint:
    """`POST /token` with a jwt-bearer grant: verified, then an access token `ya29.test-<n>`."""

    def __init__(self, expires_in: int = 3600):
        self.private_key, self.public_key = rsa_key_pair()
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self.server = FakeUpstream()
        self.token_uri = self.server.url + "/token"
        self.server.route("/token", self._token)

    def service_account(self, project: str = "dheera-test") -> dict:
        return {"type": "service_account", "project_id": project, "private_key_id": "k1",
                "private_key": self.private_key, "client_email": CLIENT_EMAIL, "client_id": "1234567890",
                "token_uri": self.token_uri}

    def _token(self, recorded) -> Script:
        from google.auth import jwt

        form = dict(urllib.parse.parse_qsl(recorded.body.decode()))
        try:
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                raise ValueError("unsupported grant type")
            # google-auth addresses the assertion to Google's token endpoint whatever token_uri says.
            claims = jwt.decode(form["assertion"], certs=self.public_key, audience=GOOGLE_TOKEN_URI)
            if claims.get("iss") != CLIENT_EMAIL or SCOPE not in str(claims.get("scope", "")).split():
                raise ValueError(f"wrong issuer or scope: {claims}")
            if not claims["iat"] - 60 <= time.time() <= claims["exp"]:
                raise ValueError("assertion expired")
        except (ValueError, KeyError) as exc:
            with self._lock:
                self.refused.append(str(exc))
            return Script(status=400, body=json.dumps({"error": "invalid_grant",
                                                       "error_description": str(exc)}).encode())
        with self._lock:
            token = f"ya29.test-{len(self.issued) + 1}"
            self.issued.append(token)
        return Script(body=json.dumps({"access_token": token, "expires_in": self.expires_in,
                                       "token_type": "Bearer"}).encode())

    def close(self):
        self.server.close()
