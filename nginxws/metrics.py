"""``websocket_metrics``: the host's statistics in Prometheus' text format.

prometheus_client does the format: ``families`` builds the metric families
(``prometheus_client.core``'s ``CounterMetricFamily`` and
``GaugeMetricFamily``) from one ``status.HostState``, and ``Exposition``
renders them with ``generate_latest`` through a collector on a registry of
its own (nothing of prometheus_client's process-wide default registry).

Every family and what it counts is listed in ``docs/status.md``; names
follow Prometheus' conventions (``nginxws_`` prefix, ``_total`` on
counters, base units: seconds, bytes).  A status family shows each status
that has been answered at least once, and its usual success status always.

A worker imports this module when it starts, if its configuration has a
``websocket_metrics`` location: before it gives up root (``user``), after
which it may not read the interpreter's files.  prometheus_client takes
some 40 ms and a few MB to import, which other configurations do not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from nginxws.stats import (
    ACCEPTED,
    BACKLOG_DROPPED,
    CLOSE_REASONS,
    CLOSED,
    DELIVERIES,
    HANDLED,
    HANDSHAKES,
    PUBLISHES,
    PUSHES,
    READING,
    RECEIVED_BYTES,
    RELOADS,
    RELOADS_FAILED,
    RESTARTS,
    SENT_BYTES,
    STATUS_INDEX,
    STATUS_LABELS,
    WAITING,
    WRITING,
    Region,
)
from nginxws.status import HostState, host_state, requests, workers_by_state

def _counter(name: str, documentation: str, value: int | float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _by_status(name: str, documentation: str, values: Iterable[int], always: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=("status",))
    for index, (label, value) in enumerate(zip(STATUS_LABELS, values)):
        if value or index == STATUS_INDEX[always]:
            family.add_metric((label,), value)
    return family


def families(state: HostState) -> list[Metric]:
    """Every metric family of the host at ``state``."""
    totals = state.totals
    size = len(STATUS_LABELS)
    reading, writing, waiting = totals.gauge(READING), totals.gauge(WRITING), totals.gauge(WAITING)
    connections = GaugeMetricFamily("nginxws_connections", "Connections now, by state (as stub_status).",
                                    labels=("state",))
    for label, value in (("reading", reading), ("writing", writing), ("waiting", waiting)):
        connections.add_metric((label,), value)
    clients = GaugeMetricFamily("nginxws_websocket_clients", "WebSocket clients connected now, by location.",
                                labels=("server", "location"))
    for (server, location), value in zip(totals.locations, totals.clients()):
        clients.add_metric((server, location), value)
    closed = CounterMetricFamily("nginxws_websocket_closed_total", "WebSocket sessions ended, by reason.",
                                 labels=("reason",))
    for reason, value in zip(CLOSE_REASONS, totals.family(CLOSED, len(CLOSE_REASONS))):
        closed.add_metric((reason,), value)
    reloads = CounterMetricFamily("nginxws_reloads_total", "Reloads (HUP), by result.", labels=("result",))
    reloads.add_metric(("ok",), totals.counter(RELOADS))
    reloads.add_metric(("failed",), totals.counter(RELOADS_FAILED))
    workers = GaugeMetricFamily("nginxws_workers", "Worker processes alive now, by state.", labels=("state",))
    for label, value in workers_by_state(state).items():
        workers.add_metric((label,), value)
    cpu = CounterMetricFamily("nginxws_process_cpu_seconds_total", "CPU time (user and system) of each process.",
                              labels=("process", "slot", "pid"))
    rss = GaugeMetricFamily("nginxws_process_resident_memory_bytes", "Resident memory of each process.",
                            labels=("process", "slot", "pid"))
    fds = GaugeMetricFamily("nginxws_process_open_fds", "Open file descriptors of each process.",
                            labels=("process", "slot", "pid"))
    for held, info in state.processes:
        if info is None:
            continue
        labels = ("master", "", str(held.pid)) if held.slot == 0 else ("worker", str(held.slot - 1), str(held.pid))
        cpu.add_metric(labels, info.cpu_seconds)
        rss.add_metric(labels, info.rss_bytes)
        if info.open_fds is not None:
            fds.add_metric(labels, info.open_fds)
    return [
        _counter("nginxws_connections_accepted_total", "Connections accepted (listen and push ports).",
                 totals.counter(ACCEPTED)),
        _counter("nginxws_connections_handled_total",
                 "Connections handled (accepted and not closed at once for worker_connections).",
                 totals.counter(HANDLED)),
        GaugeMetricFamily("nginxws_connections_active", "Connections now (as stub_status's Active connections).",
                          value=reading + writing + waiting),
        connections,
        _counter("nginxws_http_requests_total", "HTTP requests of the front door and the push listeners.",
                 requests(totals)),
        clients,
        _by_status("nginxws_websocket_handshakes_total",
                   "Requests to a websocket location, by answer: 101 accepted, others refused.",
                   totals.family(HANDSHAKES, size), 101),
        closed,
        _counter("nginxws_websocket_received_bytes_total",
                 "Bytes received from WebSocket clients after their handshake, counted when a session ends.",
                 totals.counter(RECEIVED_BYTES)),
        _counter("nginxws_websocket_sent_bytes_total",
                 "Bytes sent to WebSocket clients from the 101 on, counted when a session ends.",
                 totals.counter(SENT_BYTES)),
        _by_status("nginxws_pushes_total", "Requests to the push listeners, by answer (204: delivered).",
                   totals.family(PUSHES, size), 204),
        _counter("nginxws_push_backlog_dropped_frames_total",
                 "Frames (pushes, channel messages, echoes) still waiting in a session's backlog when it ended.",
                 totals.counter(BACKLOG_DROPPED)),
        _by_status("nginxws_channel_publishes_total", "Requests to a websocket_publish location, by answer.",
                   totals.family(PUBLISHES, size), 202),
        _counter("nginxws_channel_deliveries_total", "Channel messages written or queued to a subscriber.",
                 totals.counter(DELIVERIES)),
        reloads,
        _counter("nginxws_worker_restarts_total", "Worker processes respawned after they died.",
                 totals.counter(RESTARTS)),
        workers,
        cpu,
        rss,
        fds,
    ]


class _HostCollector:
    """A prometheus_client collector of the host's families, read at each scrape."""

    def __init__(self, read: Callable[[], HostState]) -> None:
        self._read = read

    def collect(self) -> list[Metric]:
        return families(self._read())


class Exposition:
    """The scrapes of one worker: a private registry with the host's collector."""

    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self, region: Region) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HostCollector(lambda: host_state(region, fds=True)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
