"""``sessiondb serve`` and ``sessiondb export --html`` from the command line."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jinja2")
import httpx

import sessiondb
from sessiondb.cli import main

from . import _stores
from ._html import Page
from ._server import environment, serving


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def run_in_process(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("viewer-cli") / "store"
    return path, _stores.build(path)


def test_a_non_loopback_address_needs_the_explicit_flag(built: tuple[Path, str]) -> None:
    result = run_in_process("serve", str(built[0]), "--host", "0.0.0.0")
    assert result.code == 1
    assert "0.0.0.0 is not a loopback address" in result.err and "--allow-remote" in result.err


def test_a_short_token_is_refused(built: tuple[Path, str]) -> None:
    result = run_in_process("serve", str(built[0]), "--token", "short")
    assert result.code == 1 and "at least 16 characters" in result.err


@pytest.mark.parametrize(
    "token",
    [
        "t\u00f6ken" + "\u0442\u043e\u043a\u0435\u043d" + "tokentoken",
        "token with a space 0",
        "token;Path=/x0123456",
        'token"quoted"0123456',
    ],
)
def test_a_token_outside_the_url_safe_alphabet_is_refused(
    built: tuple[Path, str], token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_in_process("serve", str(built[0]), "--token", token)
    assert result.code == 1 and "--token may only use the letters A-Z a-z, digits and - _ . ~" in result.err
    monkeypatch.setenv("SESSIONDB_VIEWER_TOKEN", token)
    result = run_in_process("serve", str(built[0]))
    assert result.code == 1 and "$SESSIONDB_VIEWER_TOKEN may only use" in result.err


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "localhost"])
def test_serving_on_another_loopback_address_answers_its_own_url(built: tuple[Path, str], host: str) -> None:
    with serving(str(built[0]), "--host", host) as url, httpx.Client(timeout=30) as client:
        response = client.get(url)
        assert response.status_code == 200, response.text
        assert _stores.CHAT in Page(response.text).text


def test_serve_needs_an_existing_store(tmp_path: Path) -> None:
    result = run_in_process("serve", str(tmp_path / "none"))
    assert result.code == 1 and "no store at" in result.err
    assert not (tmp_path / "none").exists()


def test_remote_serving_requires_the_printed_token(built: tuple[Path, str]) -> None:
    with serving(str(built[0]), "--host", "0.0.0.0", "--allow-remote") as url:
        assert "?token=" in url
        base, token = url.split("?token=")
        local = base.replace("0.0.0.0", "127.0.0.1")
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            assert client.get(local).status_code == 401
            assert client.get(local + f"s/{_stores.CHAT}").status_code == 401
            assert (
                client.get(local, headers={"Host": "anything.example"}, params={"token": "x" * 32}).status_code == 401
            )
            first = client.get(f"{local}?token={token}")  # follows the redirect with the cookie
            assert first.status_code == 200 and "?token" not in str(first.url)
            assert _stores.CHAT in Page(first.text).text
            assert client.get(local + f"s/{_stores.CHAT}").status_code == 200


def test_loopback_serving_with_a_token_from_the_environment(
    built: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONDB_VIEWER_TOKEN", "env-token-0123456789")
    with serving(str(built[0])) as url:
        assert url.endswith("?token=env-token-0123456789")  # printed percent-encoded (a no-op for this alphabet)
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            assert client.get(url.split("?")[0]).status_code == 401
            assert client.get(url).status_code == 200


def test_export_html_writes_one_self_contained_page(built: tuple[Path, str], tmp_path: Path) -> None:
    target = tmp_path / "chat.html"
    result = run_in_process("export", "--html", str(built[0]), _stores.CHAT, str(target))
    assert result.code == 0, result.err
    assert "exported session chat" in result.err
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    html = target.read_text()
    page = Page(html)
    assert _stores.HOSTILE in page.text and "Two entries: README.md and src/." in page.text
    assert not page.tags("script") and not page.tags("img") and not page.tags("link")
    assert not [a for a in page.tags("a") if a.get("href")]  # no links out of the file
    (policy,) = [m for m in page.tags("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in (policy.get("content") or "")
    assert page.by_class("thinking") and page.by_class("tool")


def test_export_html_of_a_past_version_and_of_integrations(built: tuple[Path, str], tmp_path: Path) -> None:
    old = tmp_path / "old.html"
    assert run_in_process("export", str(built[0]), _stores.CHAT, str(old), "--html", "--at", "2").code == 0
    text = Page(old.read_text()).text
    assert "What is in the repository?" in text and "Let me look." not in text
    claude = tmp_path / "claude.html"
    assert run_in_process("export", "--html", str(built[0]), built[1], str(claude)).code == 0
    assert "Two files: CLAUDE.md and main.py." in Page(claude.read_text()).text
    compacted = tmp_path / "compacted.html"
    assert run_in_process("export", "--html", str(built[0]), _stores.COMPACTED, str(compacted)).code == 0
    (removed,) = Page(compacted.read_text()).by_class("removed")
    assert "question 1" in removed.text


def test_export_html_into_a_directory_as_the_jsonl_export_does(built: tuple[Path, str], tmp_path: Path) -> None:
    """A directory (an existing one, or a path ending in /, created if missing) receives SESSION.html."""
    for given, written in (
        (f"{tmp_path}/new/deeper/", tmp_path / "new" / "deeper" / "chat.html"),
        (str(tmp_path), tmp_path / "chat.html"),
    ):
        result = run_in_process("export", "--html", str(built[0]), _stores.CHAT, given)
        assert result.code == 0, result.err
        assert f"to {written} (" in result.err
        assert written.is_file() and "What is in the repository?" in Page(written.read_text()).text
    assert not (tmp_path / "new" / "deeper").is_file() and (tmp_path / "new" / "deeper").is_dir()
    jsonl = run_in_process("export", str(built[0]), _stores.CHAT, f"{tmp_path}/jsonl/")
    assert jsonl.code == 0 and (tmp_path / "jsonl" / "chat.jsonl").is_file()
    (tmp_path / "blocker").write_text("x")
    refused = run_in_process("export", "--html", str(built[0]), _stores.CHAT, f"{tmp_path}/blocker/sub/")
    assert refused.code == 1 and "blocker is a file" in refused.err, refused.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope", "{tmp}/x.html"], "no session 'nope'"),
        (["chat", "{tmp}/missing/x.html"], "does not exist"),
        (["chat", "{tmp}/x.html", "--at", "99"], "--at 99 is past them"),
        (["chat"], "needs a session and a file"),
        (["chat", "--all"], "writes one session"),
    ],
)
def test_export_html_errors(built: tuple[Path, str], tmp_path: Path, argv: list[str], message: str) -> None:
    args = [part.replace("{tmp}", str(tmp_path)) for part in argv]
    result = run_in_process("export", "--html", str(built[0]), *args)
    assert result.code == 1 and message in result.err, result.err
    assert not (tmp_path / "x.html").exists()


@pytest.mark.postgres
def test_the_serve_banner_hides_the_password_of_a_store_url(pg_url: str) -> None:
    async def create() -> None:
        async with sessiondb.open_store(pg_url) as store:
            await store.create_session(session_id="pg")

    asyncio.run(create())
    secret = "hunter2-secret"
    url = pg_url.replace("://postgres@", f"://postgres:{secret}@", 1)
    assert secret in url
    process = subprocess.Popen(
        [sys.executable, "-m", "sessiondb", "serve", url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert "viewer of postgresql://postgres:***@" in banner and secret not in banner, banner
