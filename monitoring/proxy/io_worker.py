"""The proxy's one I/O worker thread: the success callback's file work, off LiteLLM's event loop.

LiteLLM awaits ``async_log_success_event`` on the event loop that serves every request. When
that callback appended and fsynced the cost log, wrote a degraded-cache file and fsynced its
directory itself, each request paid three fsyncs and a few file opens on the loop: the proxy
served 11-23 % fewer requests a second (issue 13, item 7). Now the callback only builds the
record and hands it to this worker (a queue put), and the worker does the I/O:

- one thread, one FIFO queue: jobs are processed in the order the requests finished, so the
  cost log keeps that order;
- group commit: the worker takes every job waiting (up to ``max_batch``) and processes them
  as ONE batch: the cost-log lines in one write and one fsync, one budget decision. Jobs that
  arrive while a batch is being written form the next one, so batches grow with the load.
  ``linger_s`` (0.25 s) makes the worker wait for more after the first job, so that even
  one client's requests share a write and an fsync: at one client it halved the worker's CPU
  per request (0.61 -> 0.20-0.28 ms). A backlog of ``max_batch`` jobs, :meth:`flush`
  or :meth:`close` end a linger at once. The budget does not wait for the disk: the policy
  decides the kill switch in memory at submit time;
- a clean stop (SIGTERM -> uvicorn's graceful shutdown -> SystemExit, see
  :mod:`monitoring.proxy.serve`) runs :meth:`close` through ``atexit``: the jobs still queued
  are processed before the process ends, so no line is lost; each job is taken from the queue
  once, so none is written twice. A job put AFTER the close (LiteLLM's own logging worker
  runs the success callbacks still queued from ITS ``atexit`` handler, which runs after
  ours) is processed at once in the caller's thread, after the
  worker's last batch, so order is kept. A SIGKILL or a crash loses what was still queued:
  at most the requests of the last ``linger_s``.

The processing function must not raise; if it does, the batch is logged and dropped (the
request has long been answered), and the worker goes on.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
#: At most this many jobs in one batch (one write of ~250 B each).
MAX_BATCH: Final = 512
#: How long the worker waits for more jobs after the first one: the most a crash can lose.
LINGER_S: Final = 0.25
#: The worker's name, also given to its OS thread (``top -H``, ``/proc/<pid>/task/*/comm``,
#: where ``bench/proxy_overhead.py`` reads its CPU time).
THREAD_NAME: Final = "pf-proxy-io"
_STOP: Final = object()


class ProxyIO(Generic[T]):
    """A single worker thread that runs ``process`` on batches of queued jobs, in order."""

    def __init__(self, process: Callable[[list[T]], None], *, name: str = THREAD_NAME,
                 max_batch: int = MAX_BATCH, linger_s: float = LINGER_S) -> None:
        self._process = process
        self._name = name
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: Guards the thread's start and ``_closed`` against ``put``.
        self._state_lock = threading.Lock()
        #: Serialises ``process`` between the worker and a put after the close.
        self._process_lock = threading.Lock()
        #: Ends the worker's linger early (flush, close, a full batch waiting).
        self._hurry = threading.Event()
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self._closed = False
        self._close_timeout = 30.0

    def put(self, job: T) -> None:
        """Queue ``job`` (never blocks the caller for I/O while the worker runs)."""
        with self._state_lock:
            closed = self._closed
            if not closed:
                if self._thread is None:
                    self._start()
                with self._done:
                    self._submitted += 1
                    backlog = self._submitted - self._finished
                self._queue.put(job)
        if closed:
            self._process_late(job)
        elif backlog >= self._max_batch:
            self._hurry.set()

    def _start(self) -> None:
        # A daemon thread, drained by close() from atexit: a non-daemon one would be
        # joined BEFORE atexit handlers run, while it still waits for work.
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        thread.start()
        self._thread = thread
        atexit.register(self.close)

    def _process_late(self, job: T) -> None:
        """A job put after :meth:`close`: processed here, after the worker's last batch."""
        thread = self._thread
        if thread is not None:
            thread.join(self._close_timeout)
        with self._done:
            self._submitted += 1
        self._run_batch([job], self._close_timeout)

    def _run_batch(self, jobs: list[T], timeout: float = -1) -> None:
        if not self._process_lock.acquire(timeout=timeout):
            log.error("provider-fallback: the proxy's I/O worker is stuck; %d jobs lost",
                      len(jobs))
        else:
            try:
                self._process(jobs)
            except Exception:
                log.exception("provider-fallback: the proxy's I/O worker lost %d jobs",
                              len(jobs))
            finally:
                self._process_lock.release()
        with self._done:
            self._finished += len(jobs)
            self._done.notify_all()

    def _run(self) -> None:
        _name_os_thread(self._name)
        stopping = False
        while True:
            if stopping:  # drain what is left, then end
                try:
                    first = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                first = self._queue.get()
                if first is not _STOP and self._linger_s > 0:
                    self._hurry.wait(self._linger_s)  # more jobs join this batch meanwhile
            self._hurry.clear()
            batch: list[object] = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = stopping or any(job is _STOP for job in batch)
            jobs: list[T] = [job for job in batch if job is not _STOP]  # type: ignore[misc]
            if jobs:
                self._run_batch(jobs)

    @property
    def backlog(self) -> int:
        """Jobs queued and not processed yet."""
        return self._submitted - self._finished

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job queued before this call is processed; False on timeout."""
        with self._done:
            target = self._submitted
            if self._finished >= target:
                return True
        self._hurry.set()
        with self._done:
            return self._done.wait_for(lambda: self._finished >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Process what is queued, then stop the thread (idempotent). Jobs put later are
        processed by their caller."""
        with self._state_lock:
            thread = self._thread
            if thread is None or self._closed:
                self._closed = True
                return
            self._closed = True
            self._close_timeout = timeout
            self._queue.put(_STOP)
        self._hurry.set()
        thread.join(timeout)
        if thread.is_alive():
            log.error("provider-fallback: the proxy's I/O worker did not finish within %.0f s; "
                      "the last cost-log lines may be missing", timeout)


def _name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel too (Linux; Python 3.11 names only its
    own ``threading`` object), so its CPU time can be told from LiteLLM's threads."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode("ascii", "replace")[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
