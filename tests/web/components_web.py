"""Components of the HTTP API tests: one that hands out a signed callback URL."""

from __future__ import annotations

from typing import Any

from aiobamboo.component import Component, Service
from aiobamboo.web import CallbackSigner

#: The signer the tests give both to this component and to the web application.
SIGNER = CallbackSigner("a-test-secret-of-enough-bytes", base_url="")


class SignedCallbackService(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.callback_url = SIGNER.url_for(
            self, expires_in=data.get_one_of_inputs("expires_in")
        )
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.callback_data = callback_data
        if isinstance(callback_data, dict) and callback_data.get("fail"):
            data.outputs.ex_data = "the outside system said fail"
            return False
        return True


class SignedCallbackComponent(Component):
    code = "web_signed_callback"
    name = "Wait for a signed callback"
    bound_service = SignedCallbackService
