"""moto's S3 server with authentication that refuses what S3 refuses.

Run as `python -m harness.services.moto_server -H HOST -p PORT` with INITIAL_NO_AUTH_ACTION_COUNT
set: the first N actions are unauthenticated (LocalS3Service spends them creating an IAM user, its
policy and its access key), every later one needs that key. Two gaps of moto 5's server mode are
closed here, in the server process only:

- a request without an Authorization header crashes moto's signature check (KeyError, HTTP 500);
  here it is answered as S3 answers it: allowed where the bucket policy grants the action to
  everyone ("Principal": "*"), otherwise 403 AccessDenied;
- `POST /moto-api/reset-auth` would let any local process switch authentication off: refused.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _anonymous(handler: Any) -> bool:
    """True for a request that carries no signature at all (header or query string)."""
    if "Authorization" in handler.headers:
        return False
    query = getattr(handler, "querystring", None) or {}
    return "X-Amz-Signature" not in query and "Signature" not in query


def install() -> None:
    """Patch moto (in this process) so anonymous S3 requests get S3's answer, not a crash."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import PermissionResult, S3IAMRequest
    from moto.moto_api._internal.responses import MotoAPIResponse
    from moto.s3.exceptions import BucketAccessDeniedError, S3AccessDeniedError

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        enforcing = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        if not (enforcing and iam_request_cls is S3IAMRequest and _anonymous(self)):
            return original(self, iam_request_cls, resource)
        bucket_name = getattr(self, "bucket_name", None)
        if bucket_name:
            try:
                bucket = self.backend.get_bucket(bucket_name)
            except Exception:  # noqa: BLE001 - a missing bucket is refused like a private one
                bucket = None
            action = f"s3:{self._get_action()}"
            if bucket is not None and bucket.get_permission(action, resource) == (
                PermissionResult.PERMITTED
            ):
                return None
            raise BucketAccessDeniedError(bucket=bucket_name)
        raise S3AccessDeniedError()

    def refuse_reset_auth(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        return 403, {}, json.dumps({"Error": "authentication cannot be switched off here"})

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize
    MotoAPIResponse.reset_auth_response = refuse_reset_auth


def main(argv: list[str] | None = None) -> None:
    """Patch, then run moto's own server entry point with the same arguments."""
    install()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
