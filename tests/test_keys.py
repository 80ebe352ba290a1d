"""load_api_key / mask_key / connect(base_url=...): where keys are found, and that none leaks."""

from __future__ import annotations

import os
import secrets
import sys
import types
import warnings
from pathlib import Path

import pytest

from fixtures_steps import fake_api  # noqa: F401 (fixture)
from tutor_nb import MissingAPIKeyError, connect, load_api_key, mask_key
from tutor_nb.errors import MisspelledKeyWarning
from tutor_nb.keys import describe_api_key, find_api_key

KEY = "sk-test-" + secrets.token_hex(20)  # made up per run; never a real key
OTHER_KEY = "sk-other-" + secrets.token_hex(20)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, capsys, caplog):
    """No key in the environment, cwd in an empty folder; afterwards, no output holds a key."""
    for name in ("OPENAI_API_KEY", "OPEN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home" / "lesson"
    home.mkdir(parents=True)
    monkeypatch.chdir(home)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab.userdata", raising=False)
    yield home
    captured = capsys.readouterr()
    for key in (KEY, OTHER_KEY):
        assert key not in captured.out + captured.err + caplog.text


def write_env(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_environment_variable_comes_first(monkeypatch, isolated):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    write_env(isolated / ".env", f"OPENAI_API_KEY={OTHER_KEY}\n")
    assert load_api_key() == KEY


def test_dotenv_found_from_a_parent_folder_without_touching_environ(isolated):
    write_env(isolated.parent / ".env", f"# lesson keys\nOPENAI_API_KEY={KEY}\n")
    child = isolated / "notebooks"
    child.mkdir()
    os.chdir(child)
    assert load_api_key() == KEY
    assert "OPENAI_API_KEY" not in os.environ
    found, _ = find_api_key()
    assert found.source == f".env file ({isolated.parent / '.env'})"


def test_misspelled_name_from_the_walkthrough_works_with_a_warning(isolated):
    write_env(isolated / ".env", f"OPEN_API_KEY={KEY}\n")
    with pytest.warns(MisspelledKeyWarning, match="OPENAI_API_KEY") as record:
        assert load_api_key() == KEY
    assert "OPEN_API_KEY" in str(record[0].message)
    assert KEY not in str(record[0].message)


def test_drive_env_at_the_walkthrough_path(isolated):
    write_env(isolated / "drive" / "MyDrive" / "AUTH" / ".env", f"OPEN_API_KEY={KEY}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MisspelledKeyWarning)
        found, _ = find_api_key()
    assert found.key == KEY
    assert found.source.startswith("Google Drive .env")


def install_colab_stand_in(monkeypatch, secrets_by_name: dict, access_error: bool = False) -> None:
    """google.colab.userdata exists only inside Colab: a minimal module with its API and errors."""
    userdata = types.ModuleType("google.colab.userdata")

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    def get(name: str) -> str:
        if access_error:
            raise NotebookAccessError(name)
        if name not in secrets_by_name:
            raise SecretNotFoundError(name)
        return secrets_by_name[name]

    userdata.get = get
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)


def test_colab_secret(monkeypatch, isolated):
    install_colab_stand_in(monkeypatch, {"OPENAI_API_KEY": KEY})
    found, _ = find_api_key()
    assert (found.key, found.source) == (KEY, "Colab secrets")


def test_colab_without_access_falls_through_to_drive(monkeypatch, isolated):
    install_colab_stand_in(monkeypatch, {"OPENAI_API_KEY": OTHER_KEY}, access_error=True)
    write_env(isolated / "drive" / "MyDrive" / "AUTH" / ".env", f"OPENAI_API_KEY={KEY}\n")
    assert load_api_key() == KEY


def test_colab_without_the_secret_is_listed(monkeypatch, isolated):
    install_colab_stand_in(monkeypatch, {})
    with pytest.raises(MissingAPIKeyError, match="Colab secrets: no secret named OPENAI_API_KEY"):
        load_api_key()


def test_no_key_anywhere_lists_every_place_and_how_to_fix(isolated):
    with pytest.raises(MissingAPIKeyError) as caught:
        load_api_key()
    message = str(caught.value)
    assert len(caught.value.looked) == 5
    for expected in (
        "environment variable OPENAI_API_KEY (or OPEN_API_KEY): not set",
        f".env in {isolated} or a folder above it: none found",
        "Colab secrets: not running in Colab",
        f"Google Drive .env ({Path('drive/MyDrive/AUTH/.env')}): no such file",
        f"Google Drive .env ({Path('/content/drive/MyDrive/AUTH/.env')}): no such file",
        "export OPENAI_API_KEY=",
        "The local runtime needs no key: tutor_nb.connect() with no arguments.",
    ):
        assert expected in message
    assert load_api_key(required=False) is None


def test_env_file_without_the_key_is_reported(isolated):
    write_env(isolated / ".env", "OTHER_SETTING=1\nOPENAI_API_KEY=\n")
    with pytest.raises(MissingAPIKeyError, match=r"\.env file \(.*\): file has no OPENAI_API_KEY"):
        load_api_key()


@pytest.mark.parametrize(("key", "masked"), [
    ("sk-abcdefghijklmnopwxyz", "sk-...wxyz"),
    ("sk-proj-" + "a" * 40 + "1234", "sk-...1234"),
    ("plainlongtoken9876", "...9876"),
    ("sk-short", "sk-..."),
    ("", "(none)"),
    (None, "(none)"),
])
def test_mask_key(key, masked):
    assert mask_key(key) == masked


def test_descriptions_mask_the_key(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    found, _ = find_api_key()
    line = describe_api_key()
    print(line, repr(found), found)
    assert line == f"OpenAI API key sk-...{KEY[-4:]} from environment variable"
    assert KEY not in line + repr(found) + str(found)


def test_connect_to_a_server_sends_the_given_key(fake_api):
    client = connect(fake_api.base_url, api_key=KEY)
    client.models.list()
    path, headers = fake_api.requests[-1]
    assert path == "/v1/models"
    assert headers["authorization"] == f"Bearer {KEY}"


def test_connect_uses_a_found_key_or_a_placeholder(fake_api, monkeypatch):
    connect(fake_api.base_url).models.list()
    assert fake_api.requests[-1][1]["authorization"] == "Bearer tutor-nb-local"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    client = connect(fake_api.base_url, max_retries=0)
    assert client.max_retries == 0
    client.models.list()
    assert fake_api.requests[-1][1]["authorization"] == f"Bearer {KEY}"


def test_connect_silences_only_the_sdks_assistants_deprecation(runtime):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        client = connect(runtime.base_url)
        client.beta.assistants.create(model="m")
        client.beta.threads.create()
        warnings.warn("deprecated in some other way", DeprecationWarning)
    assert [str(w.message) for w in seen] == ["deprecated in some other way"]
