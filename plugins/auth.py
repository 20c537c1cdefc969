"""The master key: the gateway's own admin credential, compared in constant time."""

import hmac

from dheera_ai import hookimpl
from dheera_ai.errors import AuthenticationError
from dheera_ai.types import Principal

ANONYMOUS = Principal(kind="anonymous")
MASTER = Principal(kind="master", key_alias="master_key")


@hookimpl(trylast=True)
def dheera_ai_authenticate(credentials, settings):
    master_key = settings.master_key
    if not master_key:
        # No master key configured: an open gateway, which the CLI only binds to loopback.
        return ANONYMOUS
    if not credentials.api_key:
        raise AuthenticationError(
            "No API key given. Send it as 'Authorization: Bearer <key>' (or the x-dheera-ai-api-key "
            "or api-key header).", code="missing_api_key")
    if hmac.compare_digest(credentials.api_key.encode(), master_key.encode()):
        return MASTER
    return None
