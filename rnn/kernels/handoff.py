"""Worker threads that take a task within microseconds: the hand-offs of a split kernel call.

A thread asleep on a condition variable (as ThreadPoolExecutor's workers wait) started 50-80 µs after
it was handed work on this VM, and the caller, asleep at the join, woke as late: a split call hands
work over at each kernel and at the split GEMMs (rnn.kernels.threads) — six times a call when this was
written, about 0.5 ms of a 16 ms LSTM call and of a 4.5 ms Elman call at (100,32,128,128); three now.
Here a worker, once its task is done, watches a counter in shared memory for a while (`WATCH` looks,
~2 ms) in compiled code that has released the GIL and yields its core at every look, and sleeps on
the condition only after that; the caller waits for the task's end the same way.  So the hand-offs
within a call, and from one call to the next, cost a look or two.

    crew(k).submit(fn, *args) -> handle;  handle.result()  (fn's exception, if any, raised there)
"""
from __future__ import annotations

import os
import threading

import numpy as np
from numba import njit, types

WATCH = 4000  # looks before sleeping: each is a sched_yield, ~0.5 µs here

_sched_yield = types.ExternalFunction("sched_yield", types.int32())
_crew = None


@njit(nogil=True, cache=True)
def _watch(counts, i, j, target, looks):
    # whether counts[i, j] reaches target within `looks` looks; the opaque call between looks makes
    # each read memory again (and lets another thread have the core)
    for _ in range(looks):
        if counts[i, j] >= target:
            return True
        _sched_yield()
    return counts[i, j] >= target


def crew(k):
    """The process's workers, at least k of them (made again in a forked child, which has no threads)."""
    global _crew
    if _crew is None or _crew.k < k or _crew.pid != os.getpid():
        _crew = Crew(k)
    return _crew


class Crew:
    """k daemon threads, each taking one task at a time."""

    def __init__(self, k):
        self.k, self.pid = k, os.getpid()
        self.counts = np.zeros((k, 2), np.int64)  # per worker: tasks handed over, tasks finished
        self.tasks, self.errors, self.busy = [None] * k, [None] * k, [False] * k
        self.lock = threading.Lock()              # for `busy`: several threads may submit at once
        self.changed = threading.Condition()      # a count went up: for whoever sleeps instead of watching
        for i in range(k):
            threading.Thread(target=self._serve, args=(i,), daemon=True, name=f"minigrad-kernel-{i}").start()

    def _serve(self, i):
        done = 0
        while True:
            if not _watch(self.counts, i, 0, done + 1, WATCH):
                with self.changed:
                    while self.counts[i, 0] <= done:
                        self.changed.wait()
            try:
                self.tasks[i]()
            except BaseException as e:  # raised to the caller by result()
                self.errors[i] = e
            self.tasks[i] = None
            done += 1
            self.counts[i, 1] = done
            with self.changed:
                self.changed.notify_all()

    def submit(self, fn, *args):
        with self.lock:
            i = next((i for i in range(self.k) if not self.busy[i]), None)
            if i is None:  # every worker has a task (another thread's split call): this one runs at result()
                return _Deferred(fn, args)
            self.busy[i] = True
        self.tasks[i] = lambda: fn(*args)
        target = self.counts[i, 0] + 1
        self.counts[i, 0] = target  # after the task is in place: the worker reads it once it sees this
        with self.changed:
            self.changed.notify_all()
        return _Handed(self, i, target)


class _Handed:
    def __init__(self, crew, i, target):
        self.crew, self.i, self.target = crew, i, target

    def result(self):
        crew, i = self.crew, self.i
        if not _watch(crew.counts, i, 1, self.target, WATCH):
            with crew.changed:
                while crew.counts[i, 1] < self.target:
                    crew.changed.wait()
        error, crew.errors[i] = crew.errors[i], None
        with crew.lock:
            crew.busy[i] = False
        if error is not None:
            raise error


class _Deferred:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        self.fn(*self.args)
