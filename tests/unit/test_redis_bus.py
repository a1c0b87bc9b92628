"""The bus between hosts as the master and a worker run it, without processes or Redis.

The master (``Master._forward``, ``_from_other_hosts``, ``_forget``,
``_link_state``) is driven with worker stand-ins whose outboxes the test
reads and a link stand-in that records what would go to Redis; a worker
(``Worker.publish``, ``deliver_frame``) is a real one that is not running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from nginxws import bus
from nginxws.conf import load
from nginxws.log import ErrorLogger
from nginxws.master import Master, WorkerProcess, _Report
from nginxws.worker import Worker

CONF = """
master_process on;
error_log {logs}/error.log info;
events {{}}
http {{
    {redis}
    server {{ listen 127.0.0.1:8080; location /sub {{ websocket; websocket_channels $arg_channel; }} }}
}}
"""


@dataclass
class Link:
    """What the master hands the link to Redis."""

    up: bool = True
    published: list[bytes] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)

    def publish(self, frame: bytes) -> None:
        self.published.append(frame)

    def subscribe(self, name: str) -> None:
        self.changes.append(("subscribe", name))

    def unsubscribe(self, name: str) -> None:
        self.changes.append(("unsubscribe", name))


@dataclass
class Process:
    pid: int


def config(tmp_path, redis: bool = True):
    path = tmp_path / "nginx.conf"
    path.write_text(CONF.format(logs=tmp_path, redis="websocket_redis redis://127.0.0.1:6390;" if redis else ""))
    return load(str(path), prefix=str(tmp_path))


def queued(worker: WorkerProcess | Worker) -> list[bytes]:
    """What waits in a worker's outbox (the master's for it, or the worker's own)."""
    outbox = worker.outbox if isinstance(worker, WorkerProcess) else worker.bus
    frames = list(outbox._frames)
    outbox._frames.clear()
    return frames


@pytest.fixture
def master(tmp_path):
    cfg = config(tmp_path)
    master = Master(cfg, {}, ErrorLogger(cfg.error_logs), None, _Report(None))
    master.link = Link()
    for pid in (11, 12, 13):
        worker = WorkerProcess(Process(pid), pid - 11, cfg, channel=None, ready=True)
        worker.outbox = bus.Outbox(lambda: None)
        master.workers[pid] = worker
    return master


def test_a_publish_goes_to_the_other_workers_and_to_redis_in_order(master):
    source = master.workers[11]
    frames = [bus.encode("room", f"m{n}") for n in range(5)]
    for frame in frames:
        master._forward(source, frame)
    assert queued(source) == []
    assert queued(master.workers[12]) == queued(master.workers[13]) == frames
    assert master.link.published == frames


def test_the_master_counts_channels_over_its_workers(master):
    w11, w12 = master.workers[11], master.workers[12]
    master._forward(w11, bus.control(bus.SUBSCRIBE, "room"))
    master._forward(w12, bus.control(bus.SUBSCRIBE, "room"))
    master._forward(w12, bus.control(bus.SUBSCRIBE, "other"))
    assert master.link.changes == [("subscribe", "room"), ("subscribe", "other")]
    master._forward(w11, bus.control(bus.UNSUBSCRIBE, "room"))
    assert master.link.changes[2:] == []  # worker 12 still holds it
    master._forward(w12, bus.control(bus.UNSUBSCRIBE, "room"))
    assert master.link.changes[2:] == [("unsubscribe", "room")]
    # Control frames are the master's: no worker gets them, Redis gets no message.
    assert all(queued(w) == [] for w in master.workers.values()) and master.link.published == []


def test_a_worker_that_exits_drops_its_counts(master):
    w11, w12 = master.workers[11], master.workers[12]
    for name in ("alone", "shared"):
        master._forward(w11, bus.control(bus.SUBSCRIBE, name))
    master._forward(w12, bus.control(bus.SUBSCRIBE, "shared"))
    master.link.changes.clear()
    master._forget(w11)
    assert master.link.changes == [("unsubscribe", "alone")]
    assert 11 not in master.workers and master.interest.holders("shared") == {12}


def test_messages_from_other_hosts_go_to_the_workers_that_hold_the_channel(master):
    master._forward(master.workers[12], bus.control(bus.SUBSCRIBE, "room"))
    frame = bus.encode("room", "from afar")
    master._from_other_hosts(frame)
    master._from_other_hosts(bus.encode("nobody", "x"))
    assert [queued(master.workers[pid]) for pid in (11, 12, 13)] == [[], [frame], []]
    assert master.link.published == []  # never sent back to Redis


def test_every_worker_hears_when_redis_comes_and_goes(master):
    master._link_state(False)
    master._link_state(True)
    for worker in master.workers.values():
        assert queued(worker) == [bus.control(bus.REMOTE_DOWN), bus.control(bus.REMOTE_UP)]


def test_without_redis_the_master_relays_as_before(tmp_path):
    cfg = config(tmp_path, redis=False)
    master = Master(cfg, {}, ErrorLogger(cfg.error_logs), None, _Report(None))
    workers = []
    for pid in (21, 22):
        worker = WorkerProcess(Process(pid), 0, cfg, channel=None, ready=True)
        worker.outbox = bus.Outbox(lambda: None)
        master.workers[pid] = worker
        workers.append(worker)
    frame = bus.encode("room", "local")
    master._forward(workers[0], frame)
    assert master.link is None and queued(workers[1]) == [frame]


# -- a worker ---------------------------------------------------------------------


@pytest.fixture
def worker(tmp_path):
    cfg = config(tmp_path)
    worker = Worker(cfg, 0, ErrorLogger(cfg.error_logs))
    worker.bus = bus.Outbox(lambda: None)
    return worker


class Member:
    def __init__(self) -> None:
        self.channels = None
        self.limit = 4
        self.got: list = []

    def deliver(self, frame, message):
        self.got.append(message)
        return True


def test_a_worker_refuses_publishes_until_the_master_says_redis_is_up(worker):
    member = Member()
    worker.channels.join(member, "room")
    assert queued(worker) == [bus.control(bus.SUBSCRIBE, "room")]
    assert worker.publish("room", "too early") is None  # answered 503: delivered nowhere
    assert member.got == [] and queued(worker) == []
    worker.deliver_frame(bus.control(bus.REMOTE_UP))
    assert worker.publish("room", "now") == 1
    assert member.got == ["now"] and queued(worker) == [bus.encode("room", "now")]
    worker.deliver_frame(bus.control(bus.REMOTE_DOWN))
    assert worker.publish("room", "down again") is None


def test_a_worker_tells_the_master_of_a_channels_first_and_last_subscriber(worker):
    a, b = Member(), Member()
    worker.channels.join(a, "room")
    worker.channels.join(b, "room")
    worker.channels.leave_all(a)
    worker.channels.leave_all(b)
    assert queued(worker) == [bus.control(bus.SUBSCRIBE, "room"), bus.control(bus.UNSUBSCRIBE, "room")]


def test_without_redis_a_worker_sends_no_interest_and_never_refuses(tmp_path):
    cfg = config(tmp_path, redis=False)
    worker = Worker(cfg, 0, ErrorLogger(cfg.error_logs))
    worker.bus = bus.Outbox(lambda: None)
    member = Member()
    worker.channels.join(member, "room")
    assert worker.publish("room", "local") == 1
    assert queued(worker) == [bus.encode("room", "local")]


def test_a_reload_opens_keeps_or_closes_the_link_as_the_configuration_says(tmp_path):
    import trio

    (tmp_path / "plain").mkdir()
    with_redis, without = config(tmp_path, redis=True), config(tmp_path / "plain", redis=False)
    master = Master(with_redis, {}, ErrorLogger(with_redis.error_logs), None, _Report(None))
    worker = WorkerProcess(Process(31), 0, with_redis, channel=None, ready=True)
    worker.outbox = bus.Outbox(lambda: None)
    master.workers[31] = worker

    async def main():
        async with trio.open_nursery() as nursery:
            master._nursery = nursery
            master._follow_redis(with_redis)
            first = master.link
            assert first is not None and first.settings == with_redis.http.redis
            master._follow_redis(with_redis)  # the same Redis: the same link, even before it ran
            assert master.link is first
            master._follow_redis(without)
            assert master.link is None
            assert queued(worker)[-1] == bus.control(bus.REMOTE_DOWN)
            nursery.cancel_scope.cancel()

    trio.run(main)
