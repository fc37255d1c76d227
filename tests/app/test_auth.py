"""Hosted login: credentials, a growing delay after failed logins, strict cookies, secrets
from files or the environment."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tlexplorer.app.auth import (AuthError, Credentials, LoginThrottle, read_secret_file,
                                 resolve_cookie_secret)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_grows_per_user_and_address():
    clock = Clock()
    t = LoginThrottle(free=3, free_per_address=10, base=1.0, cap=8.0, clock=clock)
    assert [t.failed("ann", "1.2.3.4") for _ in range(3)] == [0.0, 0.0, 1.0]
    assert t.wait("ann", "1.2.3.4") == pytest.approx(1.0)
    assert t.wait("bob", "1.2.3.4") == 0.0          # another user from there: not yet
    assert t.wait("ann", "5.6.7.8") == 0.0          # ann from elsewhere: not yet
    clock.now += 1.0
    assert t.wait("ann", "1.2.3.4") == 0.0
    delays = [t.failed("ann", "1.2.3.4") for _ in range(5)]
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0]     # doubling up to the cap
    t.succeeded("ann", "1.2.3.4")
    assert t.wait("ann", "1.2.3.4") == 0.0
    # guessing many user names from one address meets the per-address delay
    for i in range(2):
        t.failed(f"user{i}", "1.2.3.4")
    assert t.wait("carol", "1.2.3.4") > 0
    clock.now += 10_000  # forgotten after a quiet while
    assert t.wait("carol", "1.2.3.4") == 0.0


def test_throttle_table_is_bounded():
    t = LoginThrottle(max_entries=50, clock=Clock())
    for i in range(1000):
        t.failed(f"u{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t._failures) <= 50


def test_credentials_from_a_file_and_a_password(tmp_path):
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ann": "pw-ann", "bob": "pw-bob"}))
    creds = Credentials(str(users))
    assert creds.check("ann", "pw-ann") and not creds.check("ann", "pw-bob")
    assert not creds.check("eve", "pw-ann") and not creds.check("eve", "\0unknown")
    time.sleep(0.01)
    users.write_text(json.dumps({"ann": "new"}))  # an administrator edits the file
    import os
    os.utime(users, (time.time() + 5, time.time() + 5))
    assert creds.check("ann", "new") and not creds.check("bob", "pw-bob")
    single = Credentials("s3cret")
    assert single.check("anyone", "s3cret") and not single.check("anyone", "s3cre")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON object"), ("[]", "expected a non-empty JSON object"),
    ('{"ann": 5}', "expected a non-empty JSON object")])
def test_bad_password_files_are_one_line(tmp_path, content, message):
    users = tmp_path / "users.json"
    users.write_text(content)
    with pytest.raises(AuthError, match=message) as info:
        Credentials(str(users))
    assert "\n" not in str(info.value)
    with pytest.raises(AuthError, match="password file not found"):
        Credentials(str(tmp_path / "missing.json"))


def test_secrets_from_files_and_the_environment(tmp_path, monkeypatch, capsys):
    secret = tmp_path / "cookie"
    secret.write_text("  abc123\n")
    secret.chmod(0o644)
    assert read_secret_file(secret) == "abc123"
    assert "readable by other users" in capsys.readouterr().err
    with pytest.raises(AuthError, match="file not found"):
        read_secret_file(tmp_path / "nope")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AuthError, match="is empty"):
        read_secret_file(tmp_path / "empty")
    monkeypatch.setenv("TLX_COOKIE_SECRET", "from-env")
    assert resolve_cookie_secret() == "from-env"
    assert resolve_cookie_secret(file=secret) == "abc123"
    monkeypatch.setenv("TLX_BASIC_AUTH", "pw")
    assert Credentials.resolve().check("x", "pw")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _post_login(url, user, password):
    opener = urllib.request.build_opener(_NoRedirect)
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        opener.open(url + "login", data=data, timeout=10)
    except urllib.error.HTTPError as exc:  # the 302 after the login
        exc.close()
        return exc.headers
    raise AssertionError("the login did not redirect")


def test_served_login_sets_strict_cookies_and_slows_guessing(synth_path, tmp_path, monkeypatch,
                                                             run_server):
    from tlexplorer.app.auth import LabLoginHandler

    monkeypatch.setattr(LabLoginHandler, "failure_pause", 0.0)
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ann": "right"}))
    users.chmod(0o600)
    url = run_server(synth_path, basic_auth=str(users))
    ok = _post_login(url, "ann", "right")
    cookies = ok.get_all("Set-Cookie")
    user_cookie = next(c for c in cookies if c.startswith("user="))
    assert "HttpOnly" in user_cookie and "SameSite=Lax" in user_cookie
    assert "Secure" not in user_cookie  # plain http here; Secure over TLS
    assert ok["Location"] == "/"
    logged_in = urllib.request.Request(url, headers={"Cookie": "; ".join(
        c.split(";")[0] for c in cookies)})
    with urllib.request.build_opener(_NoRedirect).open(logged_in, timeout=30) as page:
        assert page.status == 200 and b"tlexplorer" in page.read()
    refused = [_post_login(url, "ann", f"guess{i}")["Location"] for i in range(5)]
    assert all("error=" in loc for loc in refused)
    assert "Too many failed logins" in urllib.parse.unquote_plus(refused[-1])
    # inside the delay even the right password is refused, without being looked at
    late = _post_login(url, "ann", "right")
    assert "Too many failed logins" in urllib.parse.unquote_plus(late["Location"])
