"""The master's link to Redis: a host's channels joined with every other host's.

Theory of operation
-------------------
* Only the master imports this module, and only with ``websocket_redis``
  (``coredis`` on trio, through anyio).  The rules it follows are
  ``nginxws.hosts``'s; here they meet the network.
* One link per master: one client connection that publishes and one
  pub/sub connection that subscribes (Redis Cluster: sharded pub/sub,
  ``SPUBLISH``/``SSUBSCRIBE``, one connection per primary, each channel on
  the node of its slot).
* Order: the master hands each message of its workers to ``publish`` in
  the order it read them; one task sends them in that order, in pipelined
  batches on one connection, and Redis delivers them in that order to each
  subscriber connection.  So one publisher's messages reach every host in
  the order they were published.
* Interest: ``subscribe`` / ``unsubscribe`` record what the host's workers
  hold (``hosts.Interest`` decided it); one task applies the changes on the
  pub/sub connection.  After a reconnect the link subscribes to everything
  the host holds then.
* Faults: whatever breaks a connection (Redis gone, restarted, a timeout)
  ends the session: the link reports itself down (``on_state(False)``: the
  workers answer publishes 503), logs it, waits ``hosts.Backoff`` and
  connects again; once subscribed again it reports itself up.  Messages
  queued or in flight when the session broke are lost, and counted in the
  log: a publish answered 202 just before the failure may not reach the
  other hosts.
* Nothing waits for Redis on the workers' side: ``publish`` queues without
  waiting; past ``QUEUE_MESSAGES`` queued messages (Redis slower than the
  host publishes) further ones are dropped and logged, as the bus does for
  a worker that stops reading.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import coredis
import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from nginxws import hosts
from nginxws.conf.model import Redis
from nginxws.log import ErrorLogger

FAILURES = (RedisError, OSError, TimeoutError)
CONNECT_TIMEOUT = 2.0  # seconds to open a connection before the attempt counts as failed
# A reply that takes longer means Redis (or the way to it) is stuck: the
# session ends and the link reconnects rather than queue behind it.
REPLY_TIMEOUT = 5.0  # seconds
SUBSCRIBE_TIMEOUT = 5.0  # seconds for Redis to confirm a (re)subscription
PUBLISH_BATCH = 512  # messages per pipelined write: enough to keep up, small enough to stay fair
SUBSCRIBE_BATCH = 1000  # channels per SUBSCRIBE when a whole host's channels are (re)subscribed
QUEUE_MESSAGES = 100_000  # messages waiting for Redis before new ones are dropped

# coredis logs through the standard logging module; nginxws logs through its
# error_log, and what coredis would say the link reports itself.
logging.getLogger("coredis").addHandler(logging.NullHandler())
logging.getLogger("coredis").propagate = False


class RedisLink:
    """A host's link to Redis; ``run`` keeps it connected until cancelled."""

    def __init__(
        self,
        settings: Redis,
        host_id: bytes,
        interest: hosts.Interest,
        error_log: ErrorLogger,
        on_state: Callable[[bool], None],
        on_message: Callable[[bytes], None],
    ) -> None:
        self.settings = settings
        self.up = False
        self.error_log = error_log  # the master's; it hands the link the new one at a reload
        self._host_id = host_id
        self._interest = interest
        self._on_state = on_state
        self._on_message = on_message
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._in_flight = 0
        self._unsent = 0  # messages that came while the link was down (workers not told yet)
        self._dropping = False
        self._wakeup = trio.Event()
        self._changes: dict[bytes, bool] = {}  # Redis channel -> subscribed or not, the latest word
        self._changed = trio.Event()

    # -- from the master ----------------------------------------------------------

    def publish(self, frame: bytes) -> None:
        """Send a message frame of this host's workers to the other hosts, in order."""
        if not self.up:
            # Answered 202 by a worker that had not heard yet that the link is
            # down: lost for the other hosts, and counted in the log.
            self._unsent += 1
            return
        if len(self._outbox) >= QUEUE_MESSAGES:
            if not self._dropping:
                self._dropping = True
                self.error_log.alert(f"redis {self.settings.address} does not keep up: channel messages "
                                      "for the other hosts are dropped")
            return
        self._dropping = False
        self._outbox.append(hosts.to_redis(self._host_id, frame))
        self._wakeup.set()

    def subscribe(self, name: str) -> None:
        """The host holds channel ``name`` now."""
        self._changes[hosts.redis_channel(name)] = True
        self._changed.set()

    def unsubscribe(self, name: str) -> None:
        """The host holds channel ``name`` no more."""
        self._changes[hosts.redis_channel(name)] = False
        self._changed.set()

    # -- running --------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, and after any failure wait and connect again, until cancelled."""
        backoff = hosts.Backoff()
        attempts = 0
        while True:
            attempts += 1
            reason = "closed"
            try:
                await self._session(backoff)
            except* FAILURES as group:
                reason = _describe(group)
            lost = len(self._outbox) + self._in_flight + self._unsent
            self._outbox.clear()
            self._in_flight = self._unsent = 0
            delay = backoff.next()
            if self.up:
                self._set_up(False)
                self.error_log.error(f"redis {self.settings.address} lost ({reason}): publishes are "
                                      f"answered 503 until it is back; retrying in {delay:.1f}s")
                if lost:
                    self.error_log.error(f"{lost} channel message(s) for the other hosts were lost with it")
            elif attempts == 1:
                self.error_log.error(f"redis {self.settings.address} cannot be reached ({reason}): "
                                      f"channels reach this host only and publishes are answered 503; "
                                      f"retrying in {delay:.1f}s")
            else:
                self.error_log.info(f"redis {self.settings.address} still cannot be reached ({reason}); "
                                     f"retrying in {delay:.1f}s")
            await trio.sleep(delay)

    def _set_up(self, up: bool) -> None:
        self.up = up
        self._on_state(up)

    def _client(self):
        s = self.settings
        common = dict(username=s.username, password=s.password, ssl=s.tls, connect_timeout=CONNECT_TIMEOUT,
                      stream_timeout=REPLY_TIMEOUT, retry_policy=NoRetryPolicy(), decode_responses=False)
        if s.cluster:
            nodes = [coredis.connection.TCPLocation(node.host, node.port) for node in s.nodes]
            return coredis.RedisCluster(startup_nodes=nodes, **common)
        node = s.nodes[0]
        return coredis.Redis(host=node.host, port=node.port, db=s.db, **common)

    async def _session(self, backoff: hosts.Backoff) -> None:
        async with self._client() as client:
            open_pubsub = client.sharded_pubsub if self.settings.cluster else client.pubsub
            async with open_pubsub(retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True,
                                   subscription_timeout=SUBSCRIBE_TIMEOUT) as pubsub:
                self._changes.clear()
                held = [hosts.redis_channel(name) for name in self._interest.channels]
                for start in range(0, len(held), SUBSCRIBE_BATCH):
                    await pubsub.subscribe(*held[start:start + SUBSCRIBE_BATCH])
                await client.ping()
                backoff.reset()
                if self._unsent:
                    self.error_log.error(f"{self._unsent} channel message(s) for the other hosts were lost "
                                         "while redis could not be reached")
                    self._unsent = 0
                self.error_log.notice(f"redis {self.settings.address} connected, "
                                       f"{len(held)} channel(s) subscribed")
                self._set_up(True)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._receive, pubsub)
                    nursery.start_soon(self._send, client)
                    nursery.start_soon(self._follow_interest, pubsub, set(held))

    async def _receive(self, pubsub) -> None:
        host_id, on_message = self._host_id, self._on_message
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] not in ("message", "smessage"):
                continue
            frame = hosts.from_redis(host_id, message["channel"], message["data"])
            if frame is not None:
                on_message(frame)

    async def _send(self, client) -> None:
        outbox = self._outbox
        cluster = self.settings.cluster
        while True:
            if not outbox:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            batch = [outbox.popleft() for _ in range(min(len(outbox), PUBLISH_BATCH))]
            self._in_flight = len(batch)
            if len(batch) == 1:
                channel, message = batch[0]
                await (client.spublish(channel, message) if cluster else client.publish(channel, message))
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.spublish(channel, message) if cluster else pipe.publish(channel, message)
            self._in_flight = 0

    async def _follow_interest(self, pubsub, subscribed: set[bytes]) -> None:
        while True:
            if not self._changes:
                self._changed = trio.Event()
                await self._changed.wait()
                continue
            changes, self._changes = self._changes, {}
            add = [channel for channel, want in changes.items() if want and channel not in subscribed]
            remove = [channel for channel, want in changes.items() if not want and channel in subscribed]
            if add:
                await pubsub.subscribe(*add)
                subscribed.update(add)
            if remove:
                await pubsub.unsubscribe(*remove)
                subscribed.difference_update(remove)


def _describe(group: BaseExceptionGroup) -> str:
    """The first failure of a group, as one short phrase."""
    err: BaseException = group
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    text = str(err) or type(err).__name__
    return text.rstrip(".")
