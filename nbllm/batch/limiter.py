"""One rate limiter per provider, shared by every concurrent request to it.

Requests are spaced evenly (``60 / rpm`` seconds apart) rather than sent in bursts, so a run
holds a configured rate over any window, not only on average. Tokens are spaced the same way:
a request estimated at ``n`` tokens holds the next one back ``n * 60 / tpm`` seconds, corrected
by the usage the provider reports. A 429 pauses every worker: slots claimed before the pause are
given up and claimed again after it. The limiter only computes times and sleeps with
``asyncio.sleep``, so it belongs to no event loop and one object serves every loop and thread.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Spacing for requests (rpm) and tokens (tpm); ``None`` means no limit of that kind."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "the provider") -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.name = name
        self.clock = clock
        self._lock = threading.Lock()
        self._next_request = 0.0  # earliest start of the next request
        self._tokens_free = 0.0  # when the tokens claimed so far are paid for
        self._paused_until = 0.0
        self.pauses = 0

    def __repr__(self) -> str:
        return f"<RateLimiter rpm={self.rpm} tpm={self.tpm}>"

    def reserve(self, tokens: int = 0) -> float:
        """Claim the next free slot and return the clock time at which it may start."""
        with self._lock:
            start = max(self.clock(), self._next_request, self._paused_until, self._tokens_free)
            if self.rpm:
                self._next_request = start + 60.0 / self.rpm
            if self.tpm and tokens > 0:
                self._tokens_free = start + self._held(tokens) * 60.0 / self.tpm
            return start

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a slot; a pause that begins while waiting sends the caller back in line."""
        while True:
            start = self.reserve(tokens)
            delay = start - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._paused_until <= start:
                return

    def settle(self, estimated: int, actual: int | None) -> None:
        """Correct the token spacing once the provider said how many tokens a request used."""
        if not self.tpm or actual is None or actual == estimated:
            return
        with self._lock:
            self._tokens_free += (self._held(actual) - self._held(estimated)) * 60.0 / self.tpm

    def _held(self, tokens: int) -> float:
        """Tokens a request holds the next one back for: at most one minute's worth. A bigger
        request (a 10 MB row, ``max_tokens=10**9``) cannot fit the limit anyway, and spacing it
        fully would stall every later row for hours on an estimate."""
        return min(tokens, self.tpm or tokens)

    def pause(self, seconds: float) -> None:
        """Hold every worker back ``seconds`` from now (a 429 and its Retry-After)."""
        with self._lock:
            until = self.clock() + max(seconds, 0.0)
            longer = until - self._paused_until
            self._paused_until = max(self._paused_until, until)
            self.pauses += 1
        if seconds >= NOTICE_S and longer >= NOTICE_S:  # a long silent stall looks like a hang: say why
            sys.stderr.write(f"nbllm: {self.name} asked to slow down (rate limit): every request to it waits "
                             f"{seconds:.0f} s, until {time.strftime('%H:%M:%S', time.localtime(time.time() + seconds))}.\n")
            sys.stderr.flush()

    def configure(self, rpm: float | None, tpm: float | None) -> None:
        """Take the rates the latest call asked for (its own or the provider's defaults)."""
        with self._lock:
            self.rpm, self.tpm = rpm, tpm


NOTICE_S = 5.0  # a pause at least this long is announced on stderr

_limiters: dict[tuple[str, str], RateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(provider_id: str, base_url: str, rpm: float | None, tpm: float | None, *,
                set_rates: bool = True) -> RateLimiter:
    """The one limiter of a provider endpoint in this process, set to the given rates (or, with
    ``set_rates=False``, keeping the rates a running batch gave it)."""
    with _registry_lock:
        limiter = _limiters.get((provider_id, base_url))
        if limiter is None:
            limiter = _limiters[(provider_id, base_url)] = RateLimiter(rpm, tpm, name=provider_id)
        elif set_rates:
            limiter.configure(rpm, tpm)
        return limiter


def estimate_tokens(text: str, max_tokens: int | None = None) -> int:
    """A request's tokens before the provider counts them: about two characters a token (CJK text
    runs 1-2 characters a token, English about four), plus the answer's budget when one is given."""
    return len(text) // 2 + 1 + (max_tokens or 0)
