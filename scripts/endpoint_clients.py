"""Clients of an OpenAI-compatible endpoint that run while something changes behind it, and what each request got.

`Clients` runs two loops in threads: one sending chat completions back to back, one streaming them
(`stream: true`); each request on a connection of its own, with the API key. Every loop is bounded: it stops
when told, or by itself after `seconds` at most. A request counts as failed when it did not answer 200, raised
a connection error or a timeout, or (streamed) ended before its last chunk and `data: [DONE]`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import requests

PROMPT = [{"role": "user", "content": "hello"}]
TIMEOUT = (5, 60)  # seconds to connect, and of silence while reading


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended (time.monotonic()), whether it streamed, the model that answered
    (the response's "model" field) and why it failed (None when it did not)."""

    started: float
    ended: float
    stream: bool
    model: str | None
    error: str | None


def ask(url: str, key: str | None, stream: bool, tokens: int = 8) -> Outcome:
    """One chat completion through `url` (the endpoint's base, http://host:port); never raises."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"messages": PROMPT, "max_tokens": tokens, "stream": stream}
    model = error = None
    try:
        with requests.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=TIMEOUT,
                           stream=stream) as reply:  # fmt: skip
            if reply.status_code != 200:
                error = f"HTTP {reply.status_code}: {reply.text[:200]}"
            elif stream:
                model, error = _read_stream(reply.iter_lines())
            else:
                model = reply.json()["model"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(started, time.monotonic(), stream, model, error)


def _read_stream(lines: Iterable[bytes]) -> tuple[str | None, str | None]:
    """(model, None) for a whole stream: chunks, one with a finish_reason, then `data: [DONE]`; else why not."""
    model, finished = None, False
    for line in lines:
        if not line.startswith(b"data: "):
            continue
        data = line.removeprefix(b"data: ")
        if data == b"[DONE]":
            return (model, None) if finished else (model, "[DONE] before a chunk with a finish_reason")
        chunk = json.loads(data)
        model = chunk.get("model", model)
        finished = finished or any(choice.get("finish_reason") for choice in chunk.get("choices", []))
    return model, "stream cut before data: [DONE]"


class Clients:
    """A back-to-back client and a streaming client through one endpoint, in threads, until stop() or `seconds`."""

    def __init__(self, url: str, key: str | None, seconds: float, tokens: int = 8) -> None:
        self.url, self.key, self.tokens = url, key, tokens
        self.deadline = time.monotonic() + seconds
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(stream,), daemon=True) for stream in (False, True)]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self, stream: bool) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            outcome = ask(self.url, self.key, stream, self.tokens)
            with self._lock:
                self.outcomes.append(outcome)

    def stop(self) -> list[Outcome]:
        """Both loops stopped (the request in flight finishes, at most TIMEOUT); every outcome, in start order."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=sum(TIMEOUT) + 5)
        with self._lock:
            return sorted(self.outcomes, key=lambda outcome: outcome.started)

    def running_for(self) -> float:
        """Seconds left before the loops stop by themselves."""
        return max(0.0, self.deadline - time.monotonic())


def failed(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome.error is not None]


def served_by(outcomes: Iterable[Outcome], after: float) -> set[str | None]:
    """The models that answered the requests started at or after `after` (monotonic)."""
    return {outcome.model for outcome in outcomes if outcome.started >= after}


def summary(outcomes: list[Outcome]) -> str:
    """'N requests (S streamed), F failed' and the first failures' reasons."""
    bad = failed(outcomes)
    streamed = sum(outcome.stream for outcome in outcomes)
    reasons = "; ".join(sorted({outcome.error or "" for outcome in bad})[:3])
    return f"{len(outcomes)} requests ({streamed} streamed), {len(bad)} failed" + (f": {reasons}" if bad else "")
