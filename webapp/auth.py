"""Login throttling for `--auth`: after a few wrong passwords a username is refused for a
growing interval.

Gradio 6 has no limit of its own on `/login` attempts (its route compares the password
and answers 'Incorrect credentials.' as often as it is asked). `LoginThrottle` wraps the
check that Gradio calls: after `free_failures` wrong passwords for one username, every
attempt for it is refused without looking at the password for `base_delay` seconds,
doubling with each further failure up to `max_delay`; a correct login clears the count.
Gradio calls the check with the username and password only, so the client's address is
not known here: per-address limits belong in a reverse proxy in front of the studio.
Refusals are immediate (no sleep), because Gradio runs the check on its event loop.
"""

from __future__ import annotations

import collections
import hmac
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FREE_FAILURES = 5
BASE_DELAY_S = 2.0
MAX_DELAY_S = 15 * 60.0
MAX_TRACKED = 10_000
"""Usernames remembered at once; the longest-quiet ones are forgotten first."""


def password_check(username: str, password: str) -> Callable[[str, str], bool]:
    """A constant-time check of one username and password (the studio's `--auth`)."""
    want_user, want_pass = username.encode(), password.encode()

    def check(user: str, given: str) -> bool:
        same_user = hmac.compare_digest(user.encode(), want_user)
        return hmac.compare_digest(given.encode(), want_pass) and same_user

    return check


class LoginThrottle:
    """A Gradio `auth` callable that refuses a username for a while after failures."""

    def __init__(
        self,
        check: Callable[[str, str], bool],
        free_failures: int = FREE_FAILURES,
        base_delay: float = BASE_DELAY_S,
        max_delay: float = MAX_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self._lock = threading.Lock()
        # username -> (failures, refused until)
        self._failures: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()

    def locked_for(self, username: str) -> float:
        """Seconds until `username` may try again (0: now)."""
        with self._lock:
            _, until = self._failures.get(_key(username), (0, 0.0))
        return max(0.0, until - self.clock())

    def __call__(self, username: str, password: str) -> bool:
        key = _key(username)
        if self.locked_for(username) > 0:
            log.warning("login for %r refused: too many failed attempts", username)
            return False
        if self.check(username, password):
            with self._lock:
                self._failures.pop(key, None)
            return True
        with self._lock:
            failures = self._failures.pop(key, (0, 0.0))[0] + 1
            until = 0.0
            if failures >= self.free_failures:
                delay = self.base_delay * 2 ** (failures - self.free_failures)
                until = self.clock() + min(self.max_delay, delay)
                log.warning(
                    "login for %r failed %d times; refused for %.0f s",
                    username,
                    failures,
                    min(self.max_delay, delay),
                )
            self._failures[key] = (failures, until)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        return False


def _key(username: str) -> str:
    return username.strip().casefold()
