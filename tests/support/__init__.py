"""What the tests share, written once.

- ``processes``: start, wait on and stop the real ``nginxws`` (``NginxwsRun``,
  ``poll``, ``wait_for_matches``, ``/proc`` readers); behind
  ``tests/conftest.py``'s ``run_nginxws``.
- ``servers``: ``server_conf``, the one configuration template of the
  end-to-end fixtures, and ``Server``, a running nginxws with its logs and
  ``wait_log``.
- ``clients``: ``PUSH_URL`` and the welcome's push URLs, and the two ways a
  connection is turned away (``connection_refused``: nothing listens;
  ``closed_without_answer``: accepted, then closed unanswered).
- ``wsclient``: ``RawClient``, a wsproto client that sees PINGs and can misbehave.
- ``scheduling``: ``scheduler_trips``, for "does not wait" in trio tests.

Tests import them as ``from support.servers import Server``: pytest puts
``tests/`` on ``sys.path`` for ``tests/conftest.py`` (rootdir-relative
``prepend`` import mode; ``tests/`` is not a package).
"""
