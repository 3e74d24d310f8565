"""rnn.kernels.handoff: the worker threads of a split kernel call take a task while watching for it
and after they have fallen asleep, on another thread, and hand back its exception."""
import threading
import time

import pytest

from rnn.kernels import handoff


def test_a_task_runs_on_a_worker_and_result_waits_for_it():
    crew = handoff.Crew(2)
    seen = []

    def task(x):
        time.sleep(0.01)  # longer than nothing: result() must wait
        seen.append((x, threading.current_thread().name))

    handles = [crew.submit(task, x) for x in (1, 2)]
    for h in handles:
        h.result()
    assert sorted(x for x, _ in seen) == [1, 2]
    assert all(name.startswith("minigrad-kernel-") for _, name in seen)
    assert len({name for _, name in seen}) == 2


@pytest.mark.parametrize("looks", [handoff.WATCH, 1], ids=["watching", "asleep"])
def test_tasks_one_after_another_whether_the_worker_watches_or_sleeps(monkeypatch, looks):
    monkeypatch.setattr(handoff, "WATCH", looks)
    crew = handoff.Crew(1)
    out = []
    for i in range(50):
        if looks == 1 and i % 10 == 0:
            time.sleep(0.005)  # long past one look: the worker and the caller sleep on the condition
        crew.submit(out.append, i).result()
    assert out == list(range(50))


def test_a_tasks_exception_is_raised_by_result_and_the_worker_goes_on():
    crew = handoff.Crew(1)

    def fails():
        raise ValueError("block 1 failed")

    h = crew.submit(fails)
    with pytest.raises(ValueError, match="block 1 failed"):
        h.result()
    assert crew.submit(lambda: 7).result() is None  # free again, and still serving
    box = []
    crew.submit(box.append, 3).result()
    assert box == [3]


def test_with_every_worker_busy_a_task_runs_when_waited_for():
    crew = handoff.Crew(1)
    release = threading.Event()
    first = crew.submit(release.wait)
    ran = []
    second = crew.submit(lambda: ran.append(threading.current_thread().name))
    assert ran == []  # not run yet: no worker was free
    second.result()
    assert ran == [threading.current_thread().name]  # on the caller's thread
    release.set()
    first.result()


def test_the_crew_is_kept_grown_and_made_again_after_a_fork(monkeypatch):
    a = handoff.crew(1)
    assert handoff.crew(1) is a
    b = handoff.crew(a.k + 1)
    assert b is not a and b.k == a.k + 1
    monkeypatch.setattr(handoff.os, "getpid", lambda: b.pid + 1)  # a forked child: none of b's threads there
    c = handoff.crew(1)
    assert c is not b and c.pid == b.pid + 1 and c.submit(lambda: None).result() is None
