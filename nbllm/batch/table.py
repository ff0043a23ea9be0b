"""``nbllm.map`` and ``nbllm.imap``: one prompt template over many rows, answers kept in row order.

Every row of a call shares one ``TableRun``: the provider and model, the template, the options
and the provider's limiter. Each row is one engine ``AsyncResponse`` asked with the exchange
log's cache "on" (``meta["cache"]``), so a row answered by an earlier run, even one interrupted
halfway, is answered from the log and not sent again; only a miss reaches the provider. Rows
run on a private event loop (``runner.in_thread``) so the same call works in a terminal and in
a notebook; the progress bar and every result are handled in the caller's thread.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nbllm.batch.limiter import RateLimiter, estimate_tokens, limiter_for
from nbllm.batch.options import check_batch
from nbllm.batch.outcome import Failed, Summary
from nbllm.batch.rows import fill, is_frame, is_series, iter_rows, template_fields
from nbllm.batch.runner import in_thread, run_bounded
from nbllm.messages import ChatRequest, as_messages

FATAL = frozenset({"AuthError", "QuotaError"})  # every other row would fail the same way


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or a kernel interrupt during ``nbllm.map``: the rows answered so far are in ``results``."""

    def __init__(self, results: Any, summary: Summary) -> None:
        super().__init__(str(summary))
        self.results = results
        self.summary = summary
        self.kept_in: str | None = None  # the variable %%llm --over -o put the results in

    def _render_traceback_(self) -> list[str]:
        where = self.kept_in or "sys.last_value.results"
        return [f"Interrupted: {self.summary} The answers so far are in {where}."]


def limits(provider_rpm: int | None, provider_tpm: int | None, rpm: float | None,
           tpm: float | None) -> tuple[float | None, float | None]:
    """The call's rates, else the provider's defaults; 0 turns a limit off."""
    chosen_rpm = provider_rpm if rpm is None else rpm
    chosen_tpm = provider_tpm if tpm is None else tpm
    return (chosen_rpm or None), (chosen_tpm or None)


@dataclass
class TableRun:
    """What every row of one call shares."""

    template: str
    provider: Any  # nbllm.providers.base.Provider
    model: str
    system: str | None
    params: dict[str, Any]
    limiter: RateLimiter
    streamed: bool = True
    source: str = "api"
    cache: str = "on"  # "on" resumes from the log; "off" asks again; replay from the environment still wins
    fields: list[str] = field(default_factory=list)
    answered_from_log: int = 0

    def __post_init__(self) -> None:
        self.fields = template_fields(self.template)

    @classmethod
    def open(cls, prompt: str, provider: str | None, model: str | None, system: str | None,
             rpm: float | None, tpm: float | None, params: dict[str, Any], source: str = "api") -> TableRun:
        """Resolve the provider (a missing key fails here, before any row) and its shared limiter."""
        from nbllm.log.cache import check_mode, resolve_mode
        from nbllm.session import default_session
        from nbllm.validate import check_options

        cache = check_mode(params.pop("cache", None) or "on", "cache")  # nbllm's own, never a provider option
        check_options(params)
        session = default_session()
        replaying = resolve_mode(cache) == "replay"  # replay needs no key: no row reaches the provider
        chosen, model_name = session.resolve(provider, model, key_required=not replaying)
        spec = chosen.spec
        limiter = limiter_for(spec.id, spec.base_url, *limits(spec.rpm, spec.tpm, rpm, tpm))
        merged = {**session.params, **{k: v for k, v in params.items() if v is not None}}
        streamed = bool(merged.pop("stream", True))
        return cls(prompt, chosen, model_name, system, merged, limiter, streamed, source, cache)

    def request(self, row: Any, position: int | None = None) -> ChatRequest:
        prompt = fill(self.template, row, self.fields, "this row" if position is None else f"row {position}")
        params = dict(self.params)
        timeout = params.pop("timeout", None)
        return ChatRequest(messages=as_messages(prompt, self.system), model=self.model, params=params, timeout=timeout)

    async def answer(self, position: int, row: Any) -> str:
        """One row's answer text: from the log when it is there, else asked (at the limiter's pace).

        A stream that breaks off raises (``StreamInterrupted``): its partial text is never an answer.
        """
        request = self.request(row, position)
        sent = "".join(m["content"] for m in request.messages)
        estimate = estimate_tokens(sent, request.params.get("max_tokens"))
        meta = {"cache": self.cache, "where": f"row {position} of the batch"}  # replay mode still wins (nbllm.log.cache)
        response = self.provider.arespond(request, stream=self.streamed, source=self.source, meta=meta,
                                          gate=self.limiter, tokens=estimate)
        await response.areply()
        if response.meta.get("replayed"):
            self.answered_from_log += 1
        else:
            self.limiter.settle(estimate, response.usage.total_tokens)
        return response.text

    def check_rows(self, rows: list[Any]) -> None:
        """Rows in hand are all filled before anything is sent: a column one row lacks, a row that is
        no row, or a value its format does not fit is reported with its position, not left to fail."""
        for position, row in enumerate(rows):
            fill(self.template, row, self.fields, f"row {position}")

    async def stream(self, rows: Any, concurrency: int) -> AsyncIterator[tuple[int, str | Failed]]:
        """Every row's outcome as it finishes; this loop's HTTP client is closed at the end."""
        try:
            numbered = enumerate(rows)  # the same positions run_bounded gives
            async for outcome in run_bounded(numbered, lambda item: self.answer(*item), concurrency,
                                             stop=lambda f: f.reason in FATAL):
                yield outcome
        finally:
            await self.provider.aclose()


def _columns(rows: Any) -> list[Any]:
    """The columns of an empty frame (a template naming another is still a mistake); a Series has ``text``."""
    return list(rows.columns) if is_frame(rows) else ["text"]


def _keys(rows: Any) -> list[Hashable] | None:
    return list(rows.index) if is_frame(rows) or is_series(rows) else None


def _progress(total: int | None, enabled: bool, label: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="row", file=sys.stderr, dynamic_ncols=True)


def run_map(prompt: str, rows: Any, provider: str | None, model: str | None, system: str | None,
            concurrency: int, rpm: float | None, tpm: float | None, progress: bool, params: dict[str, Any],
            source: str = "api") -> Any:
    """Answer every row; a list in row order (a Series with the frame's index for pandas input)."""
    check_batch("nbllm.map" if source != "magic" else "%%llm --over", concurrency, rpm, tpm, system=system)
    run = TableRun.open(prompt, provider, model, system, rpm, tpm, params, source)
    keys = _keys(rows)
    items = list(iter_rows(rows)) if keys is None else None
    if items is not None:
        run.check_rows(items)
    elif len(rows):  # a DataFrame or Series: every row has the same columns, so the first one tells
        run.check_rows(list(itertools.islice(iter_rows(rows), 1)))
    else:  # no rows, but a template naming a column the table lacks is still a mistake
        fill("", dict.fromkeys(_columns(rows)), run.fields, "the table")
    total = len(items) if items is not None else len(rows)
    values: list[Any] = [None] * total
    summary = Summary(total=total)
    bar = _progress(total, progress, run.provider.spec.id)

    def keep(result: tuple[int, str | Failed]) -> None:
        position, value = result
        values[position] = value
        summary.count(value)
        if bar is not None:
            bar.update(1)
            if summary.failed:
                bar.set_postfix(failed=summary.failed, refresh=False)

    try:
        for result in in_thread(lambda: run.stream(items if items is not None else iter_rows(rows), concurrency),
                                leftover=keep):
            keep(result)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise Interrupted(_finish(values, keys, rows, summary, run), summary) from None
    finally:
        if bar is not None:
            bar.close()
    return _finish(values, keys, rows, summary, run)


def _finish(values: list[Any], keys: list[Hashable] | None, rows: Any, summary: Summary, run: TableRun) -> Any:
    """Fill unsent slots, report failures, and shape the result like the input."""
    summary.from_log = run.answered_from_log
    stopped = next((reason for reason in summary.failures if reason in FATAL), None)
    why = f"not sent: the run stopped after {stopped}" if stopped else "not sent: the run was interrupted"
    for i, value in enumerate(values):
        if value is None:
            values[i] = Failed("NotSent", why)
    if summary.failed or summary.interrupted or summary.from_log:
        print(f"nbllm.map: {summary}", file=sys.stderr)
    if keys is not None:
        import pandas as pd

        series = pd.Series(values, index=rows.index, dtype=object)
        series.attrs["summary"] = summary
        return series
    return Answers(values, summary)


class Answers(list):  # type: ignore[type-arg]
    """The answers of ``nbllm.map`` in row order, with ``summary`` saying how the run went."""

    def __init__(self, values: list[Any], summary: Summary) -> None:
        super().__init__(values)
        self.summary = summary


def run_imap(prompt: str, rows: Any, provider: str | None, model: str | None, system: str | None,
             concurrency: int, rpm: float | None, tpm: float | None, params: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """Yield ``(row key, answer or Failed)`` as rows finish; the key is the index label for pandas
    input, else the row's position. Rows are read only as slots free, so any iterable streams.
    Bad options and a missing key fail here, at the call, not at the first ``next``."""
    check_batch("nbllm.imap", concurrency, rpm, tpm, system=system)
    run = TableRun.open(prompt, provider, model, system, rpm, tpm, params)
    return _imap(run, rows, concurrency)


def _imap(run: TableRun, rows: Any, concurrency: int) -> Iterator[tuple[Any, Any]]:
    keys = _keys(rows)
    summary = Summary()
    for position, value in in_thread(lambda: run.stream(iter_rows(rows), concurrency)):
        summary.total += 1
        summary.count(value)
        yield (keys[position] if keys is not None else position), value
    summary.from_log = run.answered_from_log
    if summary.failed or summary.from_log:
        print(f"nbllm.imap: {summary}", file=sys.stderr)


__all__ = ["Answers", "Failed", "Interrupted", "TableRun", "run_imap", "run_map"]
