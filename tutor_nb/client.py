"""``connect``: the one way to get an ``openai.OpenAI`` client for tutor_nb's lessons."""

from __future__ import annotations

import warnings
from typing import Any

import openai

from .keys import load_api_key

LOCAL_PLACEHOLDER_KEY = "tutor-nb-local"  # the SDK insists on some key; a local server ignores it
# what the SDK says on every client.beta.assistants / client.beta.threads call
SDK_DEPRECATION = r"(deprecated|The Assistants API is deprecated in favor of the Responses API)$"


def connect(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    backend: str | None = None,
    model_base_url: str | None = None,
    model: str | None = None,
    model_api_key: str | None = None,
    **client_kwargs: Any,
) -> openai.OpenAI:
    """A client for the Assistants API.

    With ``base_url``: a client for that server, using ``api_key``, else the token a local
    ``python -m tutor_nb serve`` left in its data folder, else the key ``load_api_key`` finds
    (a placeholder when there is none, for keyless local servers).
    Without: a client for tutor_nb's local runtime, started on first use; ``backend``,
    ``model_base_url``, ``model`` and ``model_api_key`` choose the model behind it.

    The SDK's DeprecationWarning on every Assistants call is silenced (that API is what tutor_nb
    serves, so under each cell it would only be noise); other warnings are left alone.
    """
    warnings.filterwarnings("ignore", message=SDK_DEPRECATION, category=DeprecationWarning)
    if base_url is not None:
        from .runtime.config import local_token

        key = api_key or local_token(base_url) or load_api_key(required=False) or LOCAL_PLACEHOLDER_KEY
        return openai.OpenAI(base_url=base_url, api_key=key, **client_kwargs)
    from .runtime import shared_runtime

    runtime = shared_runtime(
        backend=backend, model_base_url=model_base_url, model=model, model_api_key=model_api_key)
    return runtime.client(**client_kwargs)
