"""Colab's secrets API (``userdata.get``), with its exception names, over a JSON object in an environment variable.

``COLAB_STANDIN_SECRETS='{"NAME": "value"}'`` holds the secrets the notebook is allowed to read;
with it unset there are none, as in a fresh Colab account.
"""

from __future__ import annotations

import json
import os

ENVIRONMENT_VARIABLE = "COLAB_STANDIN_SECRETS"


class NotebookAccessError(Exception):
    """The secret exists but this notebook was not given access to it."""


class SecretNotFoundError(Exception):
    """No secret of that name."""


class TimeoutException(Exception):
    """Colab's front end did not answer."""


def get(key: str) -> str:
    secrets = json.loads(os.environ.get(ENVIRONMENT_VARIABLE) or "{}")
    if key not in secrets:
        raise SecretNotFoundError(f"Secret {key} does not exist.")
    return secrets[key]
