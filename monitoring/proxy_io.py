"""The proxy's one I/O worker thread: the success callback's file work, off LiteLLM's event loop.

LiteLLM awaits ``async_log_success_event`` on the event loop that serves every request. When
that callback appended and fsynced the cost log, wrote a degraded-cache file and fsynced its
directory itself, each request paid three fsyncs and a few file opens on the loop: the proxy
served 11-23 % fewer requests a second (issue 13, item 7). Now the callback only builds the
record and hands it to this worker (a queue put), and the worker does the I/O:

- one thread, one FIFO queue: jobs are processed in the order the requests finished, so the
  cost log keeps that order;
- it takes every job waiting when it wakes (up to ``max_batch``) and processes them as ONE
  batch: the cost-log lines in one write and one fsync, one budget decision for the batch;
- a clean stop (SIGTERM -> uvicorn returns -> interpreter exit) runs :meth:`close` through
  ``atexit``: the jobs still queued are processed before the process ends, so no line is lost;
  each job is taken from the queue once, so none is written twice. A SIGKILL or a crash loses
  what was still queued (at most the requests of the last few milliseconds).

The processing function must not raise; if it does, the batch is logged and dropped (the
request has long been answered), and the worker goes on.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
#: At most this many jobs in one batch (one write of ~250 B each).
MAX_BATCH: Final = 512
_STOP: Final = object()


class ProxyIO(Generic[T]):
    """A single worker thread that runs ``process`` on batches of queued jobs, in order."""

    def __init__(self, process: Callable[[list[T]], None], *, name: str = "pf-proxy-io",
                 max_batch: int = MAX_BATCH) -> None:
        self._process = process
        self._name = name
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self._closed = False

    def put(self, job: T) -> None:
        """Queue ``job`` (never blocks); the worker starts at the first one."""
        if self._thread is None:
            self._start()
        with self._done:
            self._submitted += 1
        self._queue.put(job)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            # A daemon thread, drained by close() from atexit: a non-daemon one would be
            # joined BEFORE atexit handlers run, while it still waits for work.
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            thread.start()
            self._thread = thread
            atexit.register(self.close)

    def _run(self) -> None:
        stopping = False
        while True:
            if stopping:  # drain what is left, then end
                try:
                    first = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                first = self._queue.get()
            batch: list[object] = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = stopping or any(job is _STOP for job in batch)
            jobs: list[T] = [job for job in batch if job is not _STOP]  # type: ignore[misc]
            if jobs:
                try:
                    self._process(jobs)
                except Exception:
                    log.exception("provider-fallback: the proxy's I/O worker lost %d jobs",
                                  len(jobs))
            with self._done:
                self._finished += len(jobs)
                self._done.notify_all()

    @property
    def backlog(self) -> int:
        """Jobs queued and not processed yet."""
        return self._submitted - self._finished

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job queued before this call is processed; False on timeout."""
        with self._done:
            target = self._submitted
            return self._done.wait_for(lambda: self._finished >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Process what is queued, then stop the thread (idempotent)."""
        thread = self._thread
        if thread is None or self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.error("provider-fallback: the proxy's I/O worker did not finish within %.0f s; "
                      "the last cost-log lines may be missing", timeout)
