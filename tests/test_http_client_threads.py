"""An HTTP provider shared by threads makes exactly one client, however its first requests race.

Threads released together by a barrier all ask for the client at once; every ``httpx.Client``
made is counted. Two made means one leaked (it is never closed).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from nbllm.config import get_spec
from nbllm.providers.openai_compat import OpenAICompatProvider
from tests.fakes.openai_server import FakeOpenAIServer

THREADS = 8
ROUNDS = 5


def first_use(provider: OpenAICompatProvider, barrier: threading.Barrier, got: list[httpx.Client]) -> None:
    barrier.wait()
    got.append(provider.client)


def test_racing_first_requests_make_one_client(openai_server: FakeOpenAIServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[httpx.Client] = []

    class Counted(httpx.Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "Client", Counted)
    spec = get_spec("ernie").with_changes(base_url=openai_server.base_url)
    for _ in range(ROUNDS):
        made.clear()
        provider = OpenAICompatProvider(spec, "bce-v3/ALTAK-threadTESTkey/0123456789abcdef")
        barrier = threading.Barrier(THREADS)
        got: list[httpx.Client] = []

        threads = [threading.Thread(target=first_use, args=(provider, barrier, got), daemon=True)
                   for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(got) == THREADS
        assert len(made) == 1, f"{len(made)} clients made for one provider"
        assert all(client is made[0] for client in got)
        provider.close()
        assert made[0].is_closed  # the one client is the one close() releases
