"""Find an OpenAI API key wherever a learner may have put one, and never show it.

Looks, in order: the environment; a ``.env`` from the current folder upward; Colab
secrets; a ``.env`` on a mounted Google Drive (where the original walkthrough kept it).
Nothing is written to ``os.environ``: the key goes to the client that asks for it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MissingAPIKeyError, MisspelledKeyWarning

KEY_NAME = "OPENAI_API_KEY"
MISSPELLED_NAME = "OPEN_API_KEY"  # the walkthrough's spelling
DRIVE_ENV = Path("drive") / "MyDrive" / "AUTH" / ".env"
COLAB_DRIVE_ENV = Path("/content") / DRIVE_ENV


@dataclass(frozen=True)
class FoundKey:
    """A key and where it came from; its repr and str show the key masked."""

    key: str = field(repr=False)
    source: str
    name: str = KEY_NAME

    def __str__(self) -> str:
        return f"OpenAI API key {mask_key(self.key)} from {self.source}"

    def __repr__(self) -> str:
        return f"FoundKey({mask_key(self.key)!r}, source={self.source!r}, name={self.name!r})"


def mask_key(key: str | None) -> str:
    """``'sk-abc...wxyz'`` -> ``'sk-...wxyz'``; short keys show nothing of themselves."""
    if not key:
        return "(none)"
    prefix = "sk-" if key.startswith("sk-") else ""
    if len(key) < 12:
        return prefix + "..."
    return f"{prefix}...{key[-4:]}"


def _pick(values: dict[str, str | None], source: str) -> FoundKey | None:
    for name in (KEY_NAME, MISSPELLED_NAME):
        value = (values.get(name) or "").strip()
        if value:
            return FoundKey(value, source, name)
    return None


def _from_environment(looked: list[str]) -> FoundKey | None:
    found = _pick(dict(os.environ), "environment variable")
    if found is None:
        looked.append(f"environment variable {KEY_NAME} (or {MISSPELLED_NAME}): not set")
    return found


def _from_env_file(path: Path, label: str, looked: list[str]) -> FoundKey | None:
    if not path.is_file():
        looked.append(f"{label} ({path}): no such file")
        return None
    from dotenv import dotenv_values

    found = _pick(dotenv_values(path), f"{label} ({path})")
    if found is None:
        looked.append(f"{label} ({path}): file has no {KEY_NAME}")
    return found


def _from_dotenv_upward(looked: list[str]) -> FoundKey | None:
    from dotenv import find_dotenv

    path = find_dotenv(usecwd=True)
    if not path:
        looked.append(f".env in {Path.cwd()} or a folder above it: none found")
        return None
    return _from_env_file(Path(path), ".env file", looked)


def _from_colab_secrets(looked: list[str]) -> FoundKey | None:
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except Exception:
        looked.append("Colab secrets: not running in Colab")
        return None
    for name in (KEY_NAME, MISSPELLED_NAME):
        try:
            value = userdata.get(name)
        except Exception as error:  # SecretNotFoundError, NotebookAccessError, TimeoutException
            if type(error).__name__ == "SecretNotFoundError":
                continue
            looked.append(f"Colab secrets: {type(error).__name__} (is notebook access to the secret on?)")
            return None
        if value and value.strip():
            return FoundKey(value.strip(), "Colab secrets", name)
    looked.append(f"Colab secrets: no secret named {KEY_NAME}")
    return None


def _from_drive(looked: list[str]) -> FoundKey | None:
    for path in (DRIVE_ENV, COLAB_DRIVE_ENV):
        found = _from_env_file(path, "Google Drive .env", looked)
        if found:
            return found
    return None


def find_api_key() -> tuple[FoundKey | None, list[str]]:
    """The first key found (or None) and a line for every place that had none."""
    looked: list[str] = []
    for look in (_from_environment, _from_dotenv_upward, _from_colab_secrets, _from_drive):
        found = look(looked)
        if found:
            if found.name == MISSPELLED_NAME:
                warnings.warn(
                    f"Using the API key stored as {MISSPELLED_NAME} in {found.source}. The usual name "
                    f"is {KEY_NAME}; rename it so the openai SDK and other tools find it too.",
                    MisspelledKeyWarning, stacklevel=3)
            return found, looked
    return None, looked


def _missing_key_message(looked: list[str]) -> str:
    places = "\n".join(f"  - {line}" for line in looked)
    return (
        "No OpenAI API key found. Looked in, in order:\n"
        f"{places}\n"
        "To use OpenAI's API, set a key in one of these ways:\n"
        f"  - in a terminal: export {KEY_NAME}=sk-...\n"
        f"  - in a .env file in this folder (or a parent): {KEY_NAME}=sk-...\n"
        f"  - in Colab: add a secret named {KEY_NAME} (key icon, left sidebar) and allow notebook access\n"
        f"  - on Google Drive: {KEY_NAME}=sk-... in MyDrive/AUTH/.env, then mount the drive\n"
        "The local runtime needs no key: tutor_nb.connect() with no arguments."
    )


def load_api_key(*, required: bool = True) -> str | None:
    """The OpenAI API key from the first place that has one.

    Raises MissingAPIKeyError (listing every place looked) when none is found and
    ``required``; otherwise returns None.
    """
    found, looked = find_api_key()
    if found:
        return found.key
    if required:
        error = MissingAPIKeyError(_missing_key_message(looked))
        error.looked = looked
        raise error
    return None


def describe_api_key() -> str:
    """One line saying which key would be used and from where, masked."""
    found, _ = find_api_key()
    return str(found) if found else "No OpenAI API key found (the local runtime needs none)."
