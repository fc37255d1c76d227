"""Login for a hosted server: Panel's basic-auth login page, hardened for a lab's network.

- Passwords come from a JSON file ``{"user": "password"}`` (re-read when it changes) or are a single
  shared password; either may come from a file or an environment variable, never only the command
  line. They are compared in constant time.
- Login cookies are HttpOnly and SameSite=Lax, and Secure when the page is served over TLS.
- Repeated failed logins meet a growing delay, per user and address and per address alone: an
  attempt inside the delay is refused without looking at the password.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import stat
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import tornado.escape
from panel.auth import BasicAuthProvider, BasicLoginHandler, _validate_next_url, base64url_encode
from panel.config import config
from panel.io.state import state

from tlexplorer.errors import TLXError

ENV_BASIC_AUTH = "TLX_BASIC_AUTH"
ENV_COOKIE_SECRET = "TLX_COOKIE_SECRET"


class AuthError(TLXError):
    """A password file or secret that cannot be used."""


# ----------------------------------------------------------------------------- secrets
def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} is readable by other users of this machine "
              f"(chmod 600 {path})", file=sys.stderr)


def read_secret_file(path: "str | os.PathLike", what: str = "secret") -> str:
    """The secret stored in ``path`` (surrounding whitespace removed); a one-line error otherwise."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AuthError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"{path}: cannot read the {what} file ({exc})") from None
    if not text:
        raise AuthError(f"{path}: the {what} file is empty")
    _warn_if_readable_by_others(path)
    return text


def resolve_cookie_secret(value: "str | None" = None, file: "str | os.PathLike | None" = None
                          ) -> "str | None":
    """The cookie secret from ``file``, ``value`` or ``TLX_COOKIE_SECRET``, in that order."""
    if file:
        return read_secret_file(file, "cookie secret")
    return value or os.environ.get(ENV_COOKIE_SECRET) or None


# ----------------------------------------------------------------------------- credentials
class Credentials:
    """Who may log in: ``{user: password}`` from a JSON file, or one password for any user name.

    Parameters
    ----------
    spec : str
        The path of a JSON file ``{"user": "password", ...}``, or a password.
    """

    def __init__(self, spec: str):
        self._lock = threading.Lock()
        self._path: "Path | None" = None
        self._password: "str | None" = None
        self._users: "dict[str, str]" = {}
        self._mtime: "float | None" = None
        candidate = Path(str(spec)).expanduser()
        if candidate.is_file():
            self._path = candidate
            self._load()
            _warn_if_readable_by_others(candidate)
        elif str(spec).endswith(".json"):
            raise AuthError(f"{spec}: password file not found")
        else:
            self._password = str(spec)

    @classmethod
    def resolve(cls, value: "str | None" = None) -> "Credentials | None":
        """Credentials from ``value`` or ``TLX_BASIC_AUTH`` (a file path or a password), or None."""
        value = value or os.environ.get(ENV_BASIC_AUTH)
        return cls(value) if value else None

    def _load(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthError(f"{self._path}: cannot read the password file ({exc})") from None
        except json.JSONDecodeError as exc:
            raise AuthError(f"{self._path}: not a JSON object of user: password ({exc.msg} at "
                            f"line {exc.lineno})") from None
        if not isinstance(data, dict) or not data or not all(
                isinstance(k, str) and isinstance(v, str) and k and v for k, v in data.items()):
            raise AuthError(f"{self._path}: expected a non-empty JSON object "
                            '{"user": "password", ...} of strings')
        self._users, self._mtime = data, mtime

    def _current_users(self) -> "dict[str, str]":
        """The users, re-read when the file changed (an administrator adds a colleague)."""
        with self._lock:
            if self._path is not None:
                try:
                    if self._path.stat().st_mtime != self._mtime:
                        self._load()
                except (OSError, AuthError):
                    pass  # keep the last good list rather than locking everyone out
            return self._users

    def check(self, user: str, password: str) -> bool:
        """Whether ``user`` may log in with ``password`` (constant time in the password)."""
        given = password.encode("utf-8")
        if self._password is not None:
            return hmac.compare_digest(given, self._password.encode("utf-8"))
        users = self._current_users()
        expected = users.get(user)
        # compare against something even for an unknown user, so timing tells nothing
        ok = hmac.compare_digest(given, (expected or "\0unknown").encode("utf-8"))
        return ok and expected is not None


# ----------------------------------------------------------------------------- throttle
class LoginThrottle:
    """A growing delay after failed logins, per (user, address) and per address.

    After ``free`` failures the next attempt must wait ``base`` seconds, doubling with every further
    failure up to ``cap``; an address gets ``free_per_address`` failures over all user names.
    Entries are forgotten ``forget_after`` seconds after their last failure (and the oldest go
    first beyond ``max_entries``), so the table cannot grow without bound.
    """

    def __init__(self, *, free: int = 3, free_per_address: int = 10, base: float = 1.0,
                 cap: float = 60.0, forget_after: float = 900.0, max_entries: int = 10000,
                 clock: Callable[[], float] = time.monotonic):
        self.free, self.free_per_address = free, free_per_address
        self.base, self.cap, self.forget_after = base, cap, forget_after
        self.max_entries, self.clock = max_entries, clock
        self._lock = threading.Lock()
        # key -> (failures, time of the last failure)
        self._failures: "OrderedDict[tuple, tuple[int, float]]" = OrderedDict()

    def _keys(self, user: str, address: str) -> "list[tuple[tuple, int]]":
        return [(("user", user, address), self.free), (("address", address), self.free_per_address)]

    def _delay(self, failures: int, free: int) -> float:
        over = failures - free
        return 0.0 if over < 0 else min(self.cap, self.base * 2.0 ** over)

    def wait(self, user: str, address: str) -> float:
        """Seconds until ``user`` may try again from ``address`` (0 when now)."""
        now = self.clock()
        with self._lock:
            waits = [0.0]
            for key, free in self._keys(user, address):
                entry = self._failures.get(key)
                if entry is None:
                    continue
                failures, last = entry
                if now - last > self.forget_after:
                    del self._failures[key]
                    continue
                waits.append(last + self._delay(failures, free) - now)
            return max(0.0, max(waits))

    def failed(self, user: str, address: str) -> float:
        """Record a failed login; returns the delay before the next attempt."""
        now = self.clock()
        with self._lock:
            delays = []
            for key, free in self._keys(user, address):
                failures = self._failures.pop(key, (0, now))[0] + 1
                self._failures[key] = (failures, now)
                delays.append(self._delay(failures, free))
            while len(self._failures) > self.max_entries:
                self._failures.popitem(last=False)
            return max(delays)

    def succeeded(self, user: str, address: str) -> None:
        """Forget the user's failures from this address."""
        with self._lock:
            self._failures.pop(("user", user, address), None)


# ----------------------------------------------------------------------------- tornado handler
def cookie_options(request) -> dict:
    """HttpOnly, SameSite=Lax, and Secure when the request came over TLS."""
    return {"httponly": True, "samesite": "Lax", "secure": request.protocol == "https",
            "path": config.cookie_path}


class LabLoginHandler(BasicLoginHandler):
    """Panel's login page with constant-time checks, a failure delay and strict cookies."""

    credentials: Credentials
    throttle: LoginThrottle
    #: Pause after every failed attempt (asynchronous: nobody else waits for it).
    failure_pause = 0.5

    def get(self):
        errormessage = self.get_argument("error", "")
        next_url = _validate_next_url(self.get_argument("next", state.base_url))
        if next_url:
            self.set_cookie("next_url", next_url, **cookie_options(self.request))
        self.write(self._login_template.render(
            login_endpoint=self._login_endpoint, errormessage=errormessage,
            PANEL_CDN=_cdn_dist()))

    def _refuse(self, message: str) -> None:
        self.redirect(f"{self._login_endpoint}?error={tornado.escape.url_escape(message)}")

    async def post(self):
        username = self.get_argument("username", "")
        password = self.get_argument("password", "")
        address = self.request.remote_ip or "?"
        wait = self.throttle.wait(username, address)
        if wait > 0:
            self._refuse(f"Too many failed logins: try again in {math.ceil(wait)} s.")
            return
        if self.credentials.check(username, password):
            self.throttle.succeeded(username, address)
            self.set_current_user(username)
            self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)))
            return
        self.throttle.failed(username, address)
        await asyncio.sleep(self.failure_pause)
        self._refuse("Invalid username or password!")

    def set_current_user(self, user):
        self.clear_cookie("is_guest", path=config.cookie_path)
        if not user:
            self.clear_cookie("user", path=config.cookie_path)
            return
        options = dict(cookie_options(self.request), expires_days=config.oauth_expiry)
        self.set_secure_cookie("user", user, **options)
        id_token = base64url_encode(json.dumps({"user": user}))
        if state.encryption:
            id_token = state.encryption.encrypt(id_token.encode("utf-8"))
        self.set_secure_cookie("id_token", id_token, **options)


def _cdn_dist() -> str:
    from panel.io.resources import CDN_DIST

    return CDN_DIST


class LabAuthProvider(BasicAuthProvider):
    """The server's auth provider: :class:`LabLoginHandler` with these credentials and throttle."""

    def __init__(self, credentials: Credentials, throttle: "LoginThrottle | None" = None, **kwargs):
        self.credentials = credentials  # before Bokeh's checks read login_handler
        self.throttle = throttle or LoginThrottle()
        super().__init__(**kwargs)

    @property
    def login_handler(self):
        # a subclass per provider, so that two servers in one process never share credentials
        return type("LabLoginHandler", (LabLoginHandler,), {
            "credentials": self.credentials, "throttle": self.throttle,
            "_login_endpoint": self._login_endpoint, "_login_template": self._login_template})


__all__ = ["AuthError", "Credentials", "ENV_BASIC_AUTH", "ENV_COOKIE_SECRET", "LabAuthProvider",
           "LabLoginHandler", "LoginThrottle", "cookie_options", "read_secret_file",
           "resolve_cookie_secret"]
