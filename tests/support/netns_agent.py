"""The clients of the many-hosts test, run inside a namespace of their own.

The test's own process lives in the machine's namespace and cannot reach the
hosts' addresses; this agent runs in a namespace on the same bridge
(``ip netns exec NS python netns_agent.py``) and does what the test asks,
one JSON object per line on stdin, one answer per line on stdout:

* ``{"op": "subscribe", "url": ..., "count": N}``: N WebSocket subscribers
  to ``url``; answers their ids.
* ``{"op": "publish", "url": ..., "messages": [...]}``: POSTs each message
  in order over one keep-alive connection; answers the status codes.
* ``{"op": "receive", "ids": [...], "count": N}``: N messages from each of
  those subscribers (each within ``TIMEOUT``); answers them by id.
* ``{"op": "quiet", "ids": [...]}``: whether nothing more came to any of them
  within ``QUIET`` seconds.
* ``{"op": "closed", "ids": [...]}``: whether each one's connection has
  ended (its host is gone), waiting up to ``TIMEOUT`` for the end.
* ``{"op": "exit"}``: close everything and exit.

Every request is bounded in count and time; the agent ends with its stdin.
"""

from __future__ import annotations

import json
import sys

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TIMEOUT = 10.0
QUIET = 0.3


def main() -> None:
    subscribers: dict[int, object] = {}
    for line in sys.stdin:
        order = json.loads(line)
        op = order["op"]
        if op == "exit":
            break
        if op == "subscribe":
            ids = []
            for _ in range(order["count"]):
                ws = connect(order["url"], open_timeout=TIMEOUT)
                subscribers[len(subscribers)] = ws
                ids.append(len(subscribers) - 1)
            answer = {"ids": ids}
        elif op == "publish":
            with httpx.Client(timeout=TIMEOUT) as client:
                answer = {"statuses": [client.post(order["url"], content=m).status_code
                                       for m in order["messages"]]}
        elif op == "receive":
            answer = {"got": {str(i): [subscribers[i].recv(timeout=TIMEOUT) for _ in range(order["count"])]
                              for i in order["ids"]}}
        elif op == "quiet":
            answer = {"quiet": all(_quiet(subscribers[i]) for i in order["ids"])}
        elif op == "closed":
            answer = {"closed": [_closed(subscribers[i]) for i in order["ids"]]}
        else:
            answer = {"error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for ws in subscribers.values():
        ws.close()


def _quiet(ws) -> bool:
    try:
        ws.recv(timeout=QUIET)
    except TimeoutError:
        return True
    return False


def _closed(ws) -> bool:
    try:
        ws.recv(timeout=TIMEOUT)
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False
    return False


if __name__ == "__main__":
    main()
