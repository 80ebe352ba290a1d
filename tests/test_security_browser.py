"""Attacks a web page can make on a loopback runtime, tried over real HTTP on 127.0.0.1, and in Chromium.

A page the learner opens may send "simple" cross-site requests (text/plain, form and multipart bodies,
no preflight) or rebind its own host name to 127.0.0.1. Each attack must be refused before any route
runs: nothing created, no CORS header that would let the page read the answer. The runtime here has a
token and the attacks carry it, so what refuses them is the Host, Origin and Content-Type checks alone.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import data_path
from reliability import CliServer

TOKEN = "browser-attack-token-5b1e"
EVIL = "http://evil.example"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
ASSISTANT = json.dumps({"model": "gpt-4o", "name": "planted", "tools": [{"type": "code_interpreter"}]})


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    from tutor_nb.runtime import start

    runtime = start(data_dir=tmp_path_factory.mktemp("browser"), token=TOKEN, cassettes=[data_path("cassettes")])
    yield runtime
    runtime.stop()


def raw(rt, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
        host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request exactly as a browser (or an attacker) would send it, Host header included."""
    url = httpx.URL(rt.base_url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", f"{url.host}:{url.port}" if host is None else host)
        for name, value in {"Authorization": f"Bearer {TOKEN}", **(headers or {})}.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body or b"")
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def origin_of(rt) -> str:
    return rt.base_url.removesuffix("/v1")


def assistants(rt) -> list[str]:
    return [a.name for a in rt.client(max_retries=0).beta.assistants.list(limit=100).data]


def no_cors(headers: dict[str, str]) -> bool:
    return not any(name.startswith("access-control-") for name in headers)


MULTIPART = (b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n"
             b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nplanted\r\n--XyZ--\r\n")
SIMPLE_BODIES = [
    ("text/plain", ASSISTANT.encode()),
    ("text/plain;charset=UTF-8", ASSISTANT.encode()),
    ("application/x-www-form-urlencoded", b"model=gpt-4o&name=planted"),
    ("application/x-www-form-urlencoded", ASSISTANT.encode()),
    ("multipart/form-data; boundary=XyZ", MULTIPART),
]


def test_simple_cross_site_bodies_from_a_foreign_origin_are_refused(rt, fault_report):
    tried = 0
    for content_type, body in SIMPLE_BODIES:
        for origin in (EVIL, "null", "http://127.0.0.1:1", "http://localhost.evil.example"):
            for path in ("/v1/assistants", "/v1/threads/runs", "/v1/threads", "/v1/files"):
                status, headers, answer = raw(rt, "POST", path, body=body,
                                              headers={"Content-Type": content_type, "Origin": origin})
                assert status == 403, (content_type, origin, path, status, answer[:200])
                assert json.loads(answer)["error"]["type"] == "invalid_request_error"
                assert no_cors(headers), headers
                tried += 1
    assert "planted" not in assistants(rt)
    fault_report("simple cross-site POSTs (text/plain, form, multipart) from a foreign Origin", trials=tried,
                 outcome="403 in OpenAI's envelope before any route ran, no CORS header",
                 nothing_lost="nothing created")


def test_non_json_bodies_are_415_even_without_an_origin(rt, fault_report):
    tried = 0
    for content_type, body in [*SIMPLE_BODIES, ("", ASSISTANT.encode()), ("application/jsonx", ASSISTANT.encode())]:
        for path in ("/v1/assistants", "/v1/threads", "/v1/threads/runs"):
            headers = {"Content-Type": content_type} if content_type else {}
            status, answer_headers, answer = raw(rt, "POST", path, body=body, headers=headers)
            assert status == 415, (content_type, path, status, answer[:200])
            error = json.loads(answer)["error"]
            assert "application/json" in error["message"]
            assert no_cors(answer_headers)
            tried += 1
    assert "planted" not in assistants(rt)
    # JSON itself, with or without a charset, is still taken
    for content_type in ("application/json", "application/json; charset=utf-8"):
        status, _, answer = raw(rt, "POST", "/v1/assistants", body=json.dumps({"model": "m", "name": "fine"}).encode(),
                                headers={"Content-Type": content_type})
        assert status == 200, answer
    fault_report("POST bodies that are not application/json (no Origin header)", trials=tried,
                 outcome="415 naming application/json; multipart only on the upload endpoint",
                 nothing_lost="nothing created; JSON bodies still accepted")


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
                                  "localhost.evil.example", "192.168.1.20:{port}", ""])
def test_a_rebound_host_is_refused(rt, host, fault_report):
    port = httpx.URL(rt.base_url).port
    name = host.format(port=port)
    tried = 0
    for method, path, body in (("GET", "/v1/assistants", None), ("POST", "/v1/assistants", ASSISTANT.encode()),
                               ("GET", "/v1", None)):
        headers = {"Content-Type": "application/json"} if body else {}
        status, answer_headers, answer = raw(rt, method, path, body=body, headers=headers, host=name)
        assert status == 403, (name, method, path, status, answer[:200])
        assert "Host" in json.loads(answer)["error"]["message"]
        assert no_cors(answer_headers)
        tried += 1
    assert "planted" not in assistants(rt)
    fault_report(f"DNS rebinding: Host {host.replace('{port}', 'PORT') or '(empty)'}", trials=tried,
                 outcome="403 naming the Host check", nothing_lost="nothing created")


def test_loopback_names_and_the_own_origin_are_served(rt):
    port = httpx.URL(rt.base_url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", f"LOCALHOST:{port}"):
        status, _, answer = raw(rt, "GET", "/v1/assistants", host=host)
        assert status == 200, (host, answer)
    status, headers, answer = raw(rt, "POST", "/v1/assistants", body=json.dumps({"model": "m"}).encode(),
                                  headers={"Content-Type": "application/json", "Origin": origin_of(rt)})
    assert status == 200, answer


def test_preflight_and_wrong_methods_get_405_with_allow(rt, fault_report):
    tried = 0
    for path in ("/v1/assistants", "/v1/threads/runs", "/v1/files", "/v1/threads/thread_x/runs"):
        status, headers, answer = raw(rt, "OPTIONS", path, headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization"})
        assert status in (403, 405), (path, status)
        assert no_cors(headers), headers
        status, headers, answer = raw(rt, "OPTIONS", path)
        assert status == 405 and "allow" in headers, (path, status, headers)
        assert "OPTIONS" not in headers["allow"] and "POST" in headers["allow"]
        tried += 2
    status, headers, _ = raw(rt, "PUT", "/v1/assistants")
    assert status == 405 and set(headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    fault_report("CORS preflight (OPTIONS) from a foreign page", trials=tried,
                 outcome="refused (403 with a foreign Origin, else 405 with Allow); never any CORS header",
                 nothing_lost="-")


def test_no_token_server_keeps_the_browser_checks(tmp_path, fault_report):
    server = CliServer(tmp_path / "data", "--no-token")
    try:
        url = httpx.URL(server.base_url)
        with httpx.Client(base_url=f"http://{url.host}:{url.port}", timeout=30) as http:
            assert http.get("/v1/assistants").status_code == 200  # no token needed on loopback
            refused = [
                http.post("/v1/assistants", content=ASSISTANT, headers={"content-type": "text/plain"}),
                http.post("/v1/assistants", content=ASSISTANT,
                          headers={"content-type": "application/json", "origin": EVIL}),
                http.get("/v1/assistants", headers={"host": f"evil.example:{url.port}"}),
            ]
            assert [r.status_code for r in refused] == [415, 403, 403]
            assert http.get("/v1/assistants").json()["data"] == []
    finally:
        server.stop()
    fault_report("--no-token: cross-site and rebinding requests", trials=3,
                 outcome="415 / 403 / 403: the Host, Origin and Content-Type checks hold without a token",
                 nothing_lost="nothing created")


# -- the same attacks from a real browser --------------------------------------------------------


class _Attacker(BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args) -> None:
        pass


ATTACK_PAGE = """<!doctype html><script>
async function attack(base) {{
  const body = JSON.stringify({{model: "gpt-4o", name: "planted", tools: [{{type: "code_interpreter"}}]}});
  const results = [];
  for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {{
    try {{ await fetch(base + "/v1/assistants", {{method: "POST", mode: "no-cors", body,
            headers: {{"Content-Type": type, "Authorization": "Bearer {token}"}}}}); results.push("sent"); }}
    catch (e) {{ results.push("blocked " + e); }}
  }}
  const form = new FormData(); form.append("model", "gpt-4o"); form.append("name", "planted");
  try {{ await fetch(base + "/v1/assistants", {{method: "POST", mode: "no-cors", body: form}}); results.push("sent"); }}
  catch (e) {{ results.push("blocked " + e); }}
  try {{ const r = await fetch(base + "/v1/assistants", {{method: "POST", body,
            headers: {{"Content-Type": "application/json", "Authorization": "Bearer {token}"}}}});
        results.push("read " + r.status); }}
  catch (e) {{ results.push("blocked " + e); }}
  return results;
}}
</script>"""


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *BROWSER_ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1"])
        yield browser
        browser.close()


@pytest.mark.slow
def test_a_web_page_in_chromium_cannot_use_the_runtime(rt, chromium, fault_report):
    _Attacker.page = ATTACK_PAGE.format(token=TOKEN).encode()
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    port = httpx.URL(rt.base_url).port
    try:
        page = chromium.new_page()
        page.goto(f"http://evil.example:{attacker.server_port}/")
        cross_site = page.evaluate("base => attack(base)", f"http://127.0.0.1:{port}")
        # DNS rebinding: the page's own host name now points at the runtime, so its requests are same-origin
        page.goto(f"http://rebind.example:{port}/v1/nothing")
        page.add_script_tag(content=ATTACK_PAGE.format(token=TOKEN).split("<script>")[1].split("</script>")[0])
        rebound = page.evaluate("base => attack(base)", f"http://rebind.example:{port}")
        listing = page.evaluate("async base => (await fetch(base + '/v1/assistants', {headers: "
                                "{'Authorization': 'Bearer " + TOKEN + "'}})).status", f"http://rebind.example:{port}")
        page.close()
    finally:
        attacker.shutdown()
    assert "planted" not in assistants(rt), (cross_site, rebound)
    assert "read 200" not in cross_site and "read 200" not in rebound, (cross_site, rebound)
    assert listing == 403
    fault_report("a web page in Chromium: simple cross-site POSTs, then DNS rebinding", trials=len(cross_site) + len(rebound) + 1,
                 outcome=f"cross-site: {cross_site}; rebound: {rebound}; rebound GET: {listing}; no answer readable",
                 nothing_lost="nothing created")
