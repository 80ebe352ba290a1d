"""show_json: the exact mime bundle it publishes in IPython, and its plain-Python text."""

from __future__ import annotations

import json

import openai
import pytest

import fixtures_steps as fx
from fixtures_steps import fake_api, ipython_shell, no_ipython  # noqa: F401 (fixtures)
from tutor_nb import show_json
from tutor_nb.display import readable_json


def published(shell) -> list[dict]:
    return list(shell.display_pub.outputs)


def only_bundle(shell) -> tuple[dict, dict]:
    outputs = published(shell)
    assert len(outputs) == 1, "show_json must make exactly one display"
    return outputs[0]["data"], outputs[0]["metadata"]


def test_run_bundle_is_json_plus_indented_text(ipython_shell):
    run = fx.run()
    assert show_json(run) is None
    data, metadata = only_bundle(ipython_shell)
    expected = run.model_dump(mode="json")
    assert data == {
        "application/json": expected,
        "text/plain": json.dumps(expected, indent=2, ensure_ascii=False),
    }
    assert metadata == {"application/json": {"expanded": False}}
    assert data["application/json"]["id"] == fx.IDS["run"]
    assert data["text/plain"].startswith('{\n  "id": "run_tutor0001",\n  "assistant_id"')


def test_page_of_run_steps_bundle(ipython_shell):
    page = fx.steps_page()
    show_json(page, expanded=True)
    data, metadata = only_bundle(ipython_shell)
    tree = data["application/json"]
    assert list(tree) == ["data", "object", "first_id", "last_id", "has_more"]
    assert tree["data"] == [step.model_dump(mode="json") for step in page.data]
    assert (tree["object"], tree["first_id"], tree["last_id"], tree["has_more"]) == (
        "list", fx.IDS["code_step"], fx.IDS["message_step"], False)
    assert metadata == {"application/json": {"expanded": True}}
    assert data["text/plain"] == readable_json(tree)
    code_input = tree["data"][0]["step_details"]["tool_calls"][0]["code_interpreter"]["input"]
    assert code_input == fx.FIB_CODE


def test_multiline_strings_are_literal_blocks_in_text(ipython_shell):
    show_json(fx.code_step())
    text = only_bundle(ipython_shell)[0]["text/plain"]
    assert "\\n" not in text
    assert "def fibonacci(count):\\n" not in text
    # each code line sits on its own line, indented under the key, between triple quotes
    key_line = next(line for line in text.split("\n") if '"input": """' in line)
    indent = " " * (len(key_line) - len(key_line.lstrip()) + 2)
    for line in fx.FIB_CODE.split("\n"):
        assert (indent + line if line else "") + "\n" in text
    assert [line.strip() for line in text.split("\n")].count("4181]") == 1


def test_readable_json_format_is_json_except_for_blocks():
    assert readable_json({"code": "a = 1\n  b", "n": [1, {}], "s": "x"}) == (
        '{\n'
        '  "code": """\n'
        '    a = 1\n'
        '      b\n'
        '    """,\n'
        '  "n": [\n'
        '    1,\n'
        '    {}\n'
        '  ],\n'
        '  "s": "x"\n'
        '}'
    )
    plain = {"a": [1, 2.5, None, True], "b": {"c": "d"}, "e": []}
    assert readable_json(plain) == json.dumps(plain, indent=2, ensure_ascii=False)


def test_response_bundle(ipython_shell):
    response = fx.response()
    show_json(response)
    data, metadata = only_bundle(ipython_shell)
    tree = data["application/json"]
    assert tree == response.model_dump(mode="json", warnings=False)
    assert tree["output"][0]["type"] == "code_interpreter_call"
    assert tree["output"][0]["code"] == fx.FIB_CODE
    assert data["text/plain"] == readable_json(tree)
    assert "처음 20개의 피보나치 수는" in data["text/plain"]
    assert metadata == {"application/json": {"expanded": False}}


def test_korean_dict_bundle_keeps_korean_unescaped(ipython_shell):
    message = {"role": "user", "content": fx.KOREAN_QUESTION, "tags": ["수학", "코드"]}
    show_json(message)
    data, metadata = only_bundle(ipython_shell)
    assert data == {
        "application/json": message,
        "text/plain": '{\n  "role": "user",\n  "content": "코드를 써서 피보나치 수 20개를 구해 줘",\n'
                      '  "tags": [\n    "수학",\n    "코드"\n  ]\n}',
    }
    assert "\\u" not in data["text/plain"]


def test_json_string_and_list_of_models(ipython_shell):
    show_json(json.dumps(fx.STEPS_PAGE_JSON))
    show_json([fx.code_step()])
    first, second = published(ipython_shell)
    assert first["data"]["application/json"] == fx.STEPS_PAGE_JSON
    assert second["data"]["application/json"] == [fx.code_step().model_dump(mode="json")]


class _Unknown:
    def __repr__(self) -> str:
        return "<Unknown thing>"


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class _HasToDict:
    def to_dict(self) -> dict:
        return {"kind": "to_dict", "value": 3}


def test_unknown_objects_fall_back_to_repr_with_note(ipython_shell):
    show_json(_Unknown())
    show_json(_BrokenRepr())
    show_json(_HasToDict())
    unknown, broken, to_dict = published(ipython_shell)
    assert unknown["data"] == {
        "text/plain": "<Unknown thing>\n(show_json: _Unknown is not JSON-like, so this is its repr)"}
    assert "repr failed: repr exploded" in broken["data"]["text/plain"]
    assert to_dict["data"]["application/json"] == {"kind": "to_dict", "value": 3}


def test_plain_python_prints_the_same_text(no_ipython, capsys):
    message = {"content": fx.KOREAN_QUESTION, "code": "x = 1\nx"}
    assert show_json(message) is None
    assert capsys.readouterr().out == readable_json(message) + "\n"


def test_page_from_a_real_client_over_http(fake_api, ipython_shell):
    client = openai.OpenAI(base_url=fake_api.base_url, api_key="test-key-not-secret")
    page = client.beta.threads.runs.steps.list(
        thread_id=fx.IDS["thread"], run_id=fx.IDS["run"], order="asc")
    show_json(page)
    tree = only_bundle(ipython_shell)[0]["application/json"]
    assert list(tree) == ["data", "object", "first_id", "last_id", "has_more"]
    assert tree["data"][0]["step_details"]["tool_calls"][0]["code_interpreter"]["input"] == fx.FIB_CODE
    assert tree["last_id"] == fx.IDS["message_step"]


@pytest.mark.parametrize("value", [3, "plain words", None])
def test_scalars_show_as_text_only(ipython_shell, value):
    show_json(value)
    data, metadata = only_bundle(ipython_shell)
    assert data == {"text/plain": json.dumps(value, ensure_ascii=False)}
    assert metadata == {}


# ----------------------------------------------------------------------------- show_message

MESSAGE = {
    "id": "msg_1", "object": "thread.message", "role": "assistant", "created_at": 0, "thread_id": "thread_1",
    "status": "completed", "attachments": [], "metadata": {},
    "content": [{"type": "text", "text": {
        "value": "The roots are \\(x = 2\\) and \\(x = 3\\):\n\n\\[ x = \\frac{5 \\pm 1}{2} \\]\n\n[the table](sandbox:/mnt/data/roots.csv)",
        "annotations": [{"type": "file_path", "text": "sandbox:/mnt/data/roots.csv", "start_index": 81, "end_index": 108,
                         "file_path": {"file_id": "file-roots"}}]}}],
}


class _Files:
    def content(self, file_id):
        assert file_id == "file-roots"
        return type("Body", (), {"read": lambda self: b"x\n2\n3\n"})()


def test_show_message_renders_markdown_math_and_download_links(ipython_shell):
    from openai.types.beta.threads import Message
    from tutor_nb import show_message

    assert MESSAGE["content"][0]["text"]["value"][81:108] == "sandbox:/mnt/data/roots.csv"
    client = type("Client", (), {"files": _Files()})()
    show_message(Message.model_validate(MESSAGE), client=client)
    (output,) = ipython_shell.display_pub.outputs
    html = output["data"]["text/html"]
    assert "$x = 2$" in html and "$$ x = \\frac{5 \\pm 1}{2} $$" in html and "\\[" not in html
    assert 'download="roots.csv"' in html and 'href="data:text/csv;base64,eAoyCjMK"' in html and ">the table</a>" in html
    assert "x = (5 ± 1)/2" in output["data"]["text/plain"]


def test_show_message_prints_plain_math_in_a_terminal(no_ipython, capsys):
    from tutor_nb import show_message

    show_message({"data": [MESSAGE]})  # a page, as messages.list returns it; no client: no file bytes
    out = capsys.readouterr().out
    assert "The roots are x = 2 and x = 3:" in out and "x = (5 ± 1)/2" in out
    assert "\\(" not in out and "$" not in out


def test_show_message_refuses_what_is_not_a_message():
    from tutor_nb import show_message

    with pytest.raises(TypeError, match="show_message needs a message"):
        show_message([])


def test_show_message_in_colab_is_markdown_colab_typesets():
    from tutor_nb.display import message_bundle

    client = type("Client", (), {"files": _Files()})()
    bundle = message_bundle(MESSAGE, client, colab=True)
    assert "text/html" not in bundle
    md = bundle["text/markdown"]
    assert "$x = 2$" in md and "$$ x = \\frac{5 \\pm 1}{2} $$" in md
    assert "[the table](data:text/csv;base64,eAoyCjMK)" in md and "sandbox:" not in md


def test_show_message_links_responses_container_files():
    from tutor_nb.display import message_bundle

    class Content:
        def retrieve(self, file_id, container_id):
            assert (file_id, container_id) == ("cfile_1", "cntr_1")
            return type("Body", (), {"read": lambda self: b"a,b\n"})()

    client = type("Client", (), {"containers": type("C", (), {"files": type("F", (), {"content": Content()})()})()})()
    text = "Saved [the table](sandbox:/mnt/data/t.csv)."
    response = {"object": "response", "output": [{"type": "message", "role": "assistant", "content": [{
        "type": "output_text", "text": text, "annotations": [{
            "type": "container_file_citation", "container_id": "cntr_1", "file_id": "cfile_1", "filename": "t.csv",
            "start_index": text.index("sandbox:"), "end_index": text.index(")")}]}]}]}
    html = message_bundle(response, client, colab=False)["text/html"]
    assert 'download="t.csv"' in html and "data:text/csv;base64,YSxiCg==" in html
