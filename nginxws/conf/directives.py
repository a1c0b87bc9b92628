"""The directive table: every directive nginxws knows, described once.

Like nginx's ``ngx_command_t`` arrays, one entry gives a directive's name, the
contexts it may appear in, its number of arguments, whether it is a block,
and the handler that gives it meaning, plus the documentation lines
(Syntax / Default / Context / what it does) from which the reference part of
``docs/configuration.md`` is generated (``python -m nginxws.conf.reference``).
The table is data: the builder (``nginxws.conf.builder``) reads it and acts.

Three kinds of entries:

* supported: the handler records the value in the draft (``include`` has
  none: the builder reads the files itself);
* ignored: the directive is accepted so that a stock nginx.conf loads, and
  every occurrence gives ``[warn] "x" directive is ignored``;
* refused: the directive would change what nginx does in a way nginxws
  cannot honour (client certificates, access control, the ``proxy_*`` directives other
  than those of the backend...), so it is an ``[emerg]`` wherever it appears.

An entry whose name ends in ``*`` covers a family (``gzip_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nginxws.conf import handlers as h
from nginxws.conf.handlers import Handler
from nginxws.conf.model import HEALTH, METRICS, STUB_STATUS

MAIN, EVENTS, HTTP, SERVER, LOCATION = "main", "events", "http", "server", "location"
CONTEXT_ORDER = (MAIN, EVENTS, HTTP, SERVER, LOCATION)
ANY_CONTEXT = frozenset(CONTEXT_ORDER)
HTTP_ANY = frozenset({HTTP, SERVER, LOCATION})
HTTP_SERVER = frozenset({HTTP, SERVER})

# Number of arguments after the name, as (minimum, maximum or None).
NOARGS = (0, 0)
TAKE1 = (1, 1)
TAKE12 = (1, 2)
TAKE2 = (2, 2)
ONE_MORE = (1, None)
TWO_MORE = (2, None)
ANY = (0, None)

SUPPORTED, IGNORED, REFUSED = "supported", "ignored", "refused"
INCLUDE = "include"


@dataclass(frozen=True, slots=True)
class Directive:
    """One row of the table (see the module docstring)."""

    name: str
    contexts: frozenset[str]
    args: tuple[int, int | None]
    handler: Handler | None  # None: the builder's own (include, ignored, refused)
    block: bool = False
    kind: str = SUPPORTED
    syntax: str = ""
    default: str = "\u2014"
    doc: str = ""

    @property
    def context_line(self) -> str:
        """The Context: line of the docs, in nginx's order."""
        return ", ".join(c for c in CONTEXT_ORDER if c in self.contexts)

    def takes(self, count: int) -> bool:
        """Whether ``count`` arguments are a valid number for this directive."""
        low, high = self.args
        return count >= low and (high is None or count <= high)


def _d(
    name: str, contexts: frozenset[str] | set[str], args: tuple[int, int | None], handler: Handler | None,
    **kw: object
) -> Directive:
    return Directive(name, frozenset(contexts), args, handler, **kw)  # type: ignore[arg-type]


SUPPORTED_DIRECTIVES = (
    # -- main ------------------------------------------------------------------
    _d("worker_processes", {MAIN}, TAKE1, h.worker_processes,
       syntax="worker_processes number | auto;", default="worker_processes 1;",
       doc="The number of worker processes. `auto` is the number of CPUs."),
    _d("pid", {MAIN}, TAKE1, h.pid,
       syntax="pid file;", default="pid logs/nginxws.pid;",
       doc="The file the master process writes its process ID to, and that `nginxws -s` reads. "
           "A relative path is relative to the prefix (`-p`)."),
    _d("error_log", {MAIN, HTTP, SERVER, LOCATION}, ONE_MORE, h.error_log,
       syntax="error_log file | stderr [level];", default="error_log logs/error.log error;",
       doc="Where errors are logged, and from which level on: `debug`, `info`, `notice`, `warn`, "
           "`error`, `crit`, `alert` or `emerg`. Several `error_log` directives on one level all "
           "log. A relative path is relative to the prefix. A level that sets none inherits the "
           "enclosing level's logs; the `http` level inherits the main ones."),
    _d("daemon", {MAIN}, TAKE1, h.flag,
       syntax="daemon on | off;", default="daemon on;",
       doc="Whether the master process detaches from the terminal."),
    _d("master_process", {MAIN}, TAKE1, h.flag,
       syntax="master_process on | off;", default="master_process on;",
       doc="`off` runs a single process that serves by itself (for development)."),
    _d("worker_rlimit_nofile", {MAIN}, TAKE1, h.number,
       syntax="worker_rlimit_nofile number;",
       doc="The limit on open files (RLIMIT_NOFILE) of the worker processes; with "
           "`master_process off`, of the single process (nginx leaves it unapplied there)."),
    _d("worker_shutdown_timeout", {MAIN}, TAKE1, h.seconds,
       syntax="worker_shutdown_timeout time;",
       doc="How long a gracefully stopping worker (`-s quit`, reload) waits for its WebSocket "
           "connections before closing them."),
    _d("user", {MAIN}, TAKE12, h.user,
       syntax="user user [group];",
       doc="The user and group the worker processes run as. The master, started as root, binds "
           "the `listen` sockets, writes the pid file and starts the workers; each worker opens its "
           "logs and binds its push listeners as root (so a push port below 1024 works), then "
           "switches for good (setgid, initgroups, setuid), as nginx's workers do. Without `group`, "
           "the group of the same name, as in nginx (`user www-data;` is `user www-data www-data;`). "
           "An unknown user or group is an error (`getpwnam(\"x\") failed`). A master not started "
           "as root warns `the \"user\" directive makes sense only if the master process runs with "
           "super-user privileges, ignored`. On `-s reopen` the master gives the log files to the "
           "user before the workers reopen them. Unlike nginx, no `user` means the workers keep the "
           "master's identity (nginx's root master switches them to `nobody`); with "
           "`master_process off` the single process keeps its own, as nginx's does. See "
           "[processes.md](processes.md#workers-as-another-user)."),
    _d("events", {MAIN}, NOARGS, h.events, block=True,
       syntax="events { ... }",
       doc="The connection processing settings. Required, as in nginx."),
    _d("http", {MAIN}, NOARGS, h.http, block=True,
       syntax="http { ... }",
       doc="The HTTP server settings."),
    _d(INCLUDE, ANY_CONTEXT, TAKE1, None,
       syntax="include file | mask;",
       doc="Reads another file, or every file matching a glob mask (in sorted order), in place. "
           "A relative path is relative to the directory of the main configuration file. A mask "
           "that matches nothing is fine; a missing file is an error."),
    # -- events ----------------------------------------------------------------
    _d("worker_connections", {EVENTS}, TAKE1, h.worker_connections,
       syntax="worker_connections number;", default="worker_connections 512;",
       doc="The maximum number of simultaneous connections of one worker process, client and "
           "push connections together."),
    # -- http / server / location ----------------------------------------------
    _d("server", {HTTP}, NOARGS, h.server, block=True,
       syntax="server { ... }",
       doc="A virtual server."),
    _d("listen", {SERVER}, ONE_MORE, h.listen,
       syntax="listen address[:port] [default_server] [ssl] [reuseport] [backlog=number] [ipv6only=on|off];\n"
              "listen port [default_server] [ssl] [reuseport] [backlog=number] [ipv6only=on|off];\n"
              "listen unix:path [default_server] [ssl] [backlog=number];",
       default="listen *:80 | *:8000;",
       doc="The address and port the server accepts connections on: `127.0.0.1:8080`, `8080`, "
           "`*:8080`, `[::]:8080`, `[::1]`, `localhost:8080` (a host name must resolve), "
           "`unix:/run/ws.sock`. A missing port is 80. Without `listen`, a server listens on "
           "`*:80` when nginxws runs as root and on `*:8000` otherwise. `default_server` makes the "
           "server the default for its address (one per address). Socket options (`backlog=`, "
           "`reuseport`, `ipv6only=`) may be given once per address, and apply to every server "
           "listening there. `ssl` makes every connection to the address TLS (see "
           "[TLS](tls.md)); it may be given on any of the address's listens. nginx's `http2`, "
           "`quic`, `proxy_protocol`, `deferred`, `bind`, `fastopen`, `rcvbuf`, `sndbuf`, "
           "`accept_filter`, `setfib`, `so_keepalive` are refused with an error."),
    _d("server_name", {SERVER}, ONE_MORE, h.server_name,
       syntax="server_name name ...;", default='server_name "";',
       doc="The names of the server, matched against the Host header: exact names "
           "(`example.com`), wildcards (`*.example.com`, `mail.*`), `.example.com` (the name and "
           "all its subdomains), regular expressions (`~^ws\\d+\\.example\\.com$`), `\"\"` (no Host) "
           "and `_` (matches nothing, the usual catch-all of a default server)."),
    _d("location", {SERVER, LOCATION}, TAKE12, h.location, block=True,
       syntax="location [ = | ~ | ~* | ^~ ] uri { ... }\nlocation @name { ... }",
       doc="Settings for request URIs, chosen as nginx chooses: exact (`=`) first, then the "
           "longest prefix; a longest prefix marked `^~` stops the search, otherwise regular "
           "expressions (`~` case-sensitive, `~*` case-insensitive) are tried in file order. "
           "Locations may nest, except inside `=` and named (`@`) locations. Regular expressions "
           "are PCRE as far as Python's `re` follows it (named groups `(?<name>...)` work); quote "
           "a regex that contains `{`."),
    _d("return", {SERVER, LOCATION}, TAKE12, h.return_,
       syntax="return code [text];\nreturn code URL;\nreturn URL;",
       doc="Answers the request with `code` (and a body `text`, or a `Location` for redirect "
           "codes) instead of serving it. A lone URL is a 302 redirect."),
    _d("access_log", HTTP_ANY, ONE_MORE, h.access_log,
       syntax="access_log path [format];\naccess_log off;", default="access_log logs/access.log combined;",
       doc="Where requests are logged, in the named `log_format` (predefined: `combined`). "
           "Several may be given. A level that sets none inherits the enclosing level's logs."),
    _d("log_format", {HTTP}, TWO_MORE, h.log_format,
       syntax="log_format name [escape=default|json|none] string ...;",
       default="log_format combined \"...\";",
       doc="Defines a log format; the strings are joined. `combined` is predefined and cannot be "
           "redefined. A format must be defined before an `access_log` uses it."),
    _d("client_header_timeout", HTTP_SERVER, TAKE1, h.seconds,
       syntax="client_header_timeout time;", default="client_header_timeout 60s;",
       doc="How long a client may take to send the request header. One that sent part of it "
           "is then answered 408 and closed; one that sent nothing is closed without a word, "
           "as nginx does."),
    _d("client_header_buffer_size", HTTP_SERVER, TAKE1, h.size,
       syntax="client_header_buffer_size size;", default="client_header_buffer_size 1k;",
       doc="The buffer for a request header that usually suffices."),
    _d("large_client_header_buffers", HTTP_SERVER, TAKE2, h.large_client_header_buffers,
       syntax="large_client_header_buffers number size;", default="large_client_header_buffers 4 8k;",
       doc="The largest request line and header line (`size`), and how many such buffers a "
           "header may use (`number`)."),
    _d("client_body_timeout", HTTP_ANY, TAKE1, h.seconds,
       syntax="client_body_timeout time;", default="client_body_timeout 60s;",
       doc="How long a push client may pause between two reads of the request body. Like "
           "nginx's timers it is kept lazily and may fire up to 0.3 s early."),
    _d("client_max_body_size", HTTP_ANY, TAKE1, h.size,
       syntax="client_max_body_size size;", default="client_max_body_size 1m;",
       doc="The largest request body (push message) accepted; larger ones get 413."),
    _d("send_timeout", HTTP_ANY, TAKE1, h.seconds,
       syntax="send_timeout time;", default="send_timeout 60s;",
       doc="How long a client that does not take what it is sent (pushes, echoes, the welcome "
           "message) may go between two successive writes before it is dropped, as in nginx. "
           "Like nginx's timers it is kept lazily: a drop may come up to 0.3 s late."),
    _d("keepalive_timeout", HTTP_ANY, TAKE12, h.keepalive_timeout,
       syntax="keepalive_timeout timeout [header_timeout];", default="keepalive_timeout 75s;",
       doc="How long an idle keep-alive HTTP connection stays open (on the push port, up to "
           "0.3 s less, as nginx's lazy timers). `header_timeout` is accepted and not used."),
    _d("tcp_nodelay", HTTP_ANY, TAKE1, h.flag,
       syntax="tcp_nodelay on | off;", default="tcp_nodelay on;",
       doc="Whether a WebSocket session's socket sends each frame at once (`TCP_NODELAY`), as "
           "nginx does for WebSocket connections. `off` (the location's setting) lets the kernel "
           "hold a small frame while an earlier one waits for its ACK and send them together "
           "(Nagle's algorithm): fewer packets and about half the kernel CPU per channel "
           "delivery, at the cost of latency (a held frame waits for the client's delayed ACK, "
           "up to 40 ms on Linux). nchan's WebSocket subscribers run that way. "
           "See [channels.md](channels.md#latency-or-cpu-tcp_nodelay)."),
    _d("server_tokens", HTTP_ANY, TAKE1, h.flag,
       syntax="server_tokens on | off;", default="server_tokens on;",
       doc="Whether the version appears in the Server header and in error pages."),
    # -- who may be served, and who the client is (nginxws.access, nginxws.realip) --
    _d("allow", HTTP_ANY, TAKE1, h.access_rule,
       syntax="allow address | CIDR | unix: | all;",
       doc="Allows the addresses given (`192.168.1.1`, `10.0.0.0/8`, `2001:db8::/32`, `unix:`, "
           "`all`); with `deny`, rules are checked in order and the first that matches decides. "
           "A level that has rules replaces the inherited ones. A denied request is answered 403 "
           "and logged `access forbidden by rule`. See [access.md](access.md)."),
    _d("deny", HTTP_ANY, TAKE1, h.access_rule,
       syntax="deny address | CIDR | unix: | all;",
       doc="Denies the addresses given; see `allow` and [access.md](access.md)."),
    _d("push_allow", HTTP_ANY, TAKE1, h.access_rule,
       syntax="push_allow address | CIDR | unix: | all;",
       doc="`allow` for the push listener: a request to a push port is checked against the "
           "`push_allow`/`push_deny` rules of the location its path names, the same way. Not "
           "in nginx. See [access.md](access.md#the-push-listener-push_allow-push_deny)."),
    _d("push_deny", HTTP_ANY, TAKE1, h.access_rule,
       syntax="push_deny address | CIDR | unix: | all;",
       doc="`deny` for the push listener; see `push_allow`."),
    _d("set_real_ip_from", HTTP_ANY, TAKE1, h.set_real_ip_from,
       syntax="set_real_ip_from address | CIDR | unix:;",
       doc="A trusted proxy: a connection from it may name the client in `real_ip_header`. "
           "A host name stands for every address it resolves to when the configuration is "
           "loaded. See [access.md](access.md#the-real-client-address)."),
    _d("real_ip_header", HTTP_ANY, TAKE1, h.real_ip_header,
       syntax="real_ip_header field | X-Real-IP | X-Forwarded-For;",
       default="real_ip_header X-Real-IP;",
       doc="The request header that names the client. nginx's `proxy_protocol` is refused "
           "(nginxws has no `proxy_protocol` listen option)."),
    _d("real_ip_recursive", HTTP_ANY, TAKE1, h.flag,
       syntax="real_ip_recursive on | off;", default="real_ip_recursive off;",
       doc="`off`: the last address of the header is the client. `on`: the last address that "
           "is not a trusted proxy is."),
    _d("websocket", {LOCATION}, ANY, h.websocket,
       syntax="websocket [pingintvl=time] [idleintvl=time] [max_message_size=size] [welcome=on|off] "
              "[push_listen=address] [push_host=name[,name...]] [push_queue=number] [deflate=on|off] "
              "[deflate_window_bits=9..15] [deflate_no_context_takeover=on|off] [push_ssl=on|off];\n"
              "websocket pingintvl idleintvl;",
       doc="Serves WebSocket connections on this location and push requests for them; see "
           "[The websocket directive](#the-websocket-directive)."),
    _d("websocket_channels", {LOCATION}, ONE_MORE, h.websocket_channels,
       syntax="websocket_channels channel ...;",
       doc="The [channels](channels.md) a client of this `websocket` location joins at its "
           "handshake. Each name may hold [variables](#variables-in-channel-names): "
           "`websocket_channels $arg_room news;`, `websocket_channels room-$1;`. Requires "
           "`websocket` in the same location; not inherited by nested locations."),
    _d("websocket_publish", {LOCATION}, TAKE1, h.websocket_publish,
       syntax="websocket_publish channel;",
       doc="Makes the location a [publish endpoint](channels.md) for the channel named, which "
           "may hold [variables](#variables-in-channel-names): `websocket_publish $arg_channel;`. "
           "Not allowed with `websocket` in the same location; not inherited by nested locations."),
    _d("websocket_redis", {HTTP}, ONE_MORE, h.websocket_redis,
       syntax="websocket_redis redis://[[user]:password@]host[:port][/db];\n"
              "websocket_redis cluster redis://host:port ...;",
       doc="Joins the [channels](channels.md) of every host that names the same Redis: a "
           "publish on any host reaches every subscriber on every host, through Redis's pub/sub "
           "(`rediss://` for TLS; `cluster` and one or more seed nodes for a Redis Cluster, "
           "with sharded pub/sub). Each host subscribes only to the channels its clients hold. "
           "While Redis cannot be reached, a publish is answered 503. Needs the `coredis` "
           "package (`pip install \"nginxws[redis]\"`) and `master_process on`. `-t` checks "
           "the syntax, not the network. See [scaling.md](scaling.md)."),
    # -- static files (docs/static.md) -------------------------------------------
    _d("root", HTTP_ANY, TAKE1, h.root,
       syntax="root path;",
       doc="The directory files are served from: the request's URI is appended to it "
           "(`root /var/www;` serves `/a/b.html` from `/var/www/a/b.html`). A relative path is "
           "relative to the prefix. The path may hold variables (`$host`, captures). nginx's "
           "default is `root html;`: nginxws serves files only where a `root` or `alias` is given. "
           "See [static.md](static.md)."),
    _d("alias", {LOCATION}, TAKE1, h.root,
       syntax="alias path;",
       doc="A replacement for the location's part of the URI: `location /i/ { alias /data/img/; }` "
           "serves `/i/a.gif` from `/data/img/a.gif`. In a regular expression location the path "
           "is the whole file path, usually with captures: `alias /data/img/$1;`. Not allowed "
           "with `root` on the same level, nor in a named location."),
    _d("index", HTTP_ANY, ONE_MORE, h.index,
       syntax="index file ...;", default="index index.html;",
       doc="The files tried, in order, for a URI that ends in `/`; the first that exists is "
           "served through an internal redirect (so another location may serve it). The last "
           "may be an absolute URI, redirected to without a check."),
    _d("try_files", {SERVER, LOCATION}, TWO_MORE, h.try_files,
       syntax="try_files file ... uri;\ntry_files file ... =code;",
       doc="Tries the files in order (a name ending in `/` must be a directory) and serves the "
           "first that exists; when none does, redirects internally to the last argument, a URI "
           "or a named location (`@name`), or answers `=code`. Names may hold variables "
           "(`$uri`). Not inherited."),
    _d("types", HTTP_ANY, NOARGS, h.types, block=True,
       syntax="types { ... }",
       default="types { text/html html; image/gif gif; image/jpeg jpg; }",
       doc="Maps file name extensions (any case) to the `Content-Type` of the answer. A level "
           "with a `types` block replaces what it would inherit. `include mime.types;` reads "
           "the file next to the configuration, or the copy of Debian's `mime.types` nginxws "
           "ships when there is none."),
    _d("default_type", HTTP_ANY, TAKE1, h.default_type,
       syntax="default_type mime-type;", default="default_type text/plain;",
       doc="The `Content-Type` of a file whose extension `types` does not name."),
    _d("autoindex", HTTP_ANY, TAKE1, h.autoindex,
       syntax="autoindex off;", default="autoindex off;",
       doc="Directory listings are never made: a directory without an index file is 403, as in "
           "nginx with `autoindex off`. `autoindex on` is an error."),
    _d("etag", HTTP_ANY, TAKE1, h.flag,
       syntax="etag on | off;", default="etag on;",
       doc="Whether files are answered with an `ETag` (nginx's: the modification time and the "
           "size in hex, `\"5f3e2a1b-2c4\"`), which `If-None-Match` and `If-Match` compare."),
    _d("if_modified_since", HTTP_ANY, TAKE1, h.if_modified_since,
       syntax="if_modified_since off | exact | before;", default="if_modified_since exact;",
       doc="How `If-Modified-Since` is compared with a file's modification time for a 304: "
           "`exact` (the same second), `before` (the same or later), or `off` (never 304 on "
           "a date)."),
    _d("log_not_found", HTTP_ANY, TAKE1, h.flag,
       syntax="log_not_found on | off;", default="log_not_found on;",
       doc="Whether a file not found is written to the error log (`[error] open() \"...\" "
           "failed (2: No such file or directory)`)."),
    # -- the backend (docs/backend.md) -------------------------------------------
    _d("auth_request", HTTP_ANY, TAKE1, h.auth_request,
       syntax="auth_request uri | off;", default="auth_request off;",
       doc="Admits a request (a WebSocket handshake, a publish) only if a subrequest to `uri` in the "
           "same server answers 2xx, before the 101; 401 and 403 are passed to the client (with "
           "`WWW-Authenticate`), any other answer or an unreachable backend gives 500, as nginx's "
           "auth_request module. See [backend.md](backend.md#auth_request)."),
    _d("auth_request_set", HTTP_ANY, TAKE2, h.auth_request_set,
       syntax="auth_request_set $variable value;",
       doc="Sets `$variable` to `value` once the `auth_request` subrequest is answered: "
           "`auth_request_set $user $upstream_http_x_user;` (the value may read the answer's "
           "`$upstream_status` and `$upstream_http_NAME`). The variable may then be used in "
           "`websocket_channels` and `proxy_set_header` anywhere in the configuration."),
    _d("proxy_pass", {LOCATION}, TAKE1, h.proxy_pass,
       syntax="proxy_pass URL;",
       doc="Sends the subrequests of this location (`auth_request`, `websocket_*_request`) to an "
           "HTTP/1.1 upstream, `http://host[:port][/uri]`, over the worker's keep-alive pool. With "
           "a URI part, it replaces the part of the request URI that matched the location; "
           "without, the URI is passed unchanged. `https`, unix sockets, variables and `upstream` "
           "blocks are not supported. See [backend.md](backend.md#proxy_pass)."),
    _d("proxy_set_header", HTTP_ANY, TAKE2, h.proxy_set_header,
       syntax="proxy_set_header field value;", default="proxy_set_header Host $proxy_host;",
       doc="A header of the upstream request, replacing the client's header of that name; an empty "
           "value sends none. A level that sets none inherits the enclosing level's."),
    _d("proxy_http_version", HTTP_ANY, TAKE1, h.proxy_http_version,
       syntax="proxy_http_version 1.1;", default="proxy_http_version 1.1;",
       doc="nginxws always speaks HTTP/1.1 to upstreams and keeps the connections alive (nginx's "
           "default is 1.0 with `Connection: close`); `1.1` is accepted so that configurations "
           "written for nginx's keep-alive load unchanged, `1.0` is refused."),
    _d("proxy_pass_request_body", HTTP_ANY, TAKE1, h.flag,
       syntax="proxy_pass_request_body on | off;", default="proxy_pass_request_body on;",
       doc="Whether the subrequest's body (a session's event or message) is sent upstream."),
    _d("proxy_pass_request_headers", HTTP_ANY, TAKE1, h.flag,
       syntax="proxy_pass_request_headers on | off;", default="proxy_pass_request_headers on;",
       doc="Whether the client's request headers (its cookies, `Authorization`...) are sent upstream."),
    _d("proxy_connect_timeout", HTTP_ANY, TAKE1, h.seconds,
       syntax="proxy_connect_timeout time;", default="proxy_connect_timeout 60s;",
       doc="How long connecting to the upstream may take (and waiting for a connection of the "
           "worker's pool when all are busy)."),
    _d("proxy_read_timeout", HTTP_ANY, TAKE1, h.seconds,
       syntax="proxy_read_timeout time;", default="proxy_read_timeout 60s;",
       doc="How long the upstream may pause between two reads of its answer."),
    _d("proxy_send_timeout", HTTP_ANY, TAKE1, h.seconds,
       syntax="proxy_send_timeout time;", default="proxy_send_timeout 60s;",
       doc="How long the upstream may pause between two writes of the request."),
    _d("internal", {LOCATION}, NOARGS, h.internal,
       syntax="internal;",
       doc="Only subrequests reach the location; a client's request to it is answered 404."),
    _d("websocket_connect_request", {LOCATION}, TAKE1, h.websocket_request,
       syntax="websocket_connect_request uri;",
       doc="A POST to `uri` when a session of this `websocket` location starts, with its push ID "
           "and URLs; sent without delaying the session, retried a bounded number of times. See "
           "[backend.md](backend.md#websocket_connect_request)."),
    _d("websocket_disconnect_request", {LOCATION}, TAKE1, h.websocket_request,
       syntax="websocket_disconnect_request uri;",
       doc="A POST to `uri` when a session of this `websocket` location ends; as "
           "`websocket_connect_request`."),
    _d("websocket_message_request", {LOCATION}, TAKE1, h.websocket_request,
       syntax="websocket_message_request uri;",
       doc="Each message of a client of this `websocket` location is POSTed to `uri` instead of "
           "echoed; a 2xx answer with a body is sent back to that client. See "
           "[backend.md](backend.md#websocket_message_request)."),
    # -- TLS (ngx_http_ssl_module; docs/tls.md) --------------------------------
    _d("ssl_certificate", HTTP_SERVER, TAKE1, h.ssl_certificate,
       syntax="ssl_certificate file;",
       doc="A PEM certificate for the server's TLS listens, followed by its chain (intermediate "
           "certificates) in the same file. May be given several times (an RSA and an ECDSA "
           "certificate); each pairs with the `ssl_certificate_key` of the same rank. A relative "
           "path is relative to the configuration file's directory. See [TLS](tls.md)."),
    _d("ssl_certificate_key", HTTP_SERVER, TAKE1, h.ssl_certificate,
       syntax="ssl_certificate_key file;",
       doc="The PEM private key of the `ssl_certificate` of the same rank; an encrypted key needs "
           "`ssl_password_file`."),
    _d("ssl_password_file", HTTP_SERVER, TAKE1, h.ssl_password_file,
       syntax="ssl_password_file file;",
       doc="A file of passphrases for encrypted keys, one per line, tried in order. It is read "
           "when the configuration is loaded."),
    _d("ssl_protocols", HTTP_SERVER, ONE_MORE, h.ssl_protocols,
       syntax="ssl_protocols [SSLv2] [SSLv3] [TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3];",
       default="ssl_protocols TLSv1.2 TLSv1.3;",
       doc="The protocol versions a TLS connection may use. Versions the system's OpenSSL cannot "
           "speak (SSLv2, SSLv3) are accepted and never used."),
    _d("ssl_ciphers", HTTP_SERVER, TAKE1, h.ssl_ciphers,
       syntax="ssl_ciphers ciphers;", default="ssl_ciphers HIGH:!aNULL:!MD5;",
       doc="The TLSv1.2 (and older) ciphers, in OpenSSL's cipher list format; TLSv1.3 suites are "
           "OpenSSL's defaults, as in nginx."),
    _d("ssl_prefer_server_ciphers", HTTP_SERVER, TAKE1, h.ssl_flag,
       syntax="ssl_prefer_server_ciphers on | off;", default="ssl_prefer_server_ciphers off;",
       doc="Whether the server's order of `ssl_ciphers` wins over the client's."),
    _d("ssl_session_tickets", HTTP_SERVER, TAKE1, h.ssl_flag,
       syntax="ssl_session_tickets on | off;", default="ssl_session_tickets on;",
       doc="Whether TLS sessions may be resumed with session tickets. The ticket keys are made "
           "by each worker and are not shared between workers."),
    # -- status and metrics (docs/status.md) -------------------------------------
    _d(STUB_STATUS, {LOCATION}, (0, 1), h.report,
       syntax="stub_status;",
       doc="The location answers `GET` and `HEAD` with nginx's basic status page (`Active "
           "connections`, `accepts handled requests`, `Reading Writing Waiting`), counted over "
           "every worker of the host, draining ones included; see [status.md](status.md). An "
           "argument (`stub_status on;`, the syntax before nginx 1.7.5) is accepted and ignored. "
           "Only in a location (nginx also allows it in `server`)."),
    _d(METRICS, {LOCATION}, NOARGS, h.report,
       syntax="websocket_metrics;",
       doc="The location answers `GET` and `HEAD` with the host's metrics in Prometheus' text "
           "format: connections, WebSocket clients per location, handshakes, pushes and publishes "
           "by status, sessions closed by reason, bytes, reloads, restarts, each worker's CPU, "
           "memory and descriptors; see [status.md](status.md)."),
    _d(HEALTH, {LOCATION}, NOARGS, h.report,
       syntax="websocket_health;",
       doc="The location answers 200 while every worker of the serving generation is alive and "
           "ready, and 503 otherwise (a worker died and is not replaced yet), for load balancers' "
           "health checks; see [status.md](status.md#health-checks)."),
)

IGNORED_DIRECTIVES = tuple(
    _d(name, contexts, ANY, None, block=block, kind=IGNORED)
    for names, contexts, block in (
        ("worker_priority worker_cpu_affinity worker_rlimit_core working_directory pcre_jit "
         "lock_file timer_resolution load_module env thread_pool", {MAIN}, False),
        ("use multi_accept accept_mutex accept_mutex_delay worker_aio_requests", {EVENTS}, False),
        ("sendfile sendfile_max_chunk tcp_nopush types_hash_max_size "
         "types_hash_bucket_size server_names_hash_max_size server_names_hash_bucket_size "
         "variables_hash_max_size variables_hash_bucket_size map_hash_max_size map_hash_bucket_size "
         "gzip gzip_* gunzip charset source_charset charset_types expires add_header "
         "server_name_in_redirect port_in_redirect absolute_redirect msie_padding msie_refresh "
         "reset_timedout_connection lingering_close lingering_time lingering_timeout "
         "keepalive_requests keepalive_time keepalive_disable client_body_buffer_size "
         "client_body_temp_path client_body_in_file_only client_body_in_single_buffer "
         "open_file_cache open_file_cache_valid open_file_cache_min_uses open_file_cache_errors "
         "open_log_file_cache output_buffers postpone_output directio aio "
         "log_subrequest resolver resolver_timeout error_page recursive_error_pages "
         "ignore_invalid_headers underscores_in_headers merge_slashes chunked_transfer_encoding "
         "limit_rate limit_rate_after", HTTP_ANY, False),
        # TLS settings the ssl module cannot honour (docs/tls.md says what is used instead)
        ("ssl_session_cache ssl_session_timeout", HTTP_SERVER, False),
    )
    for name in names.split()
)

REFUSED_DIRECTIVES = tuple(
    _d(name, ANY_CONTEXT, ANY, None, kind=REFUSED)
    for name in (
        "proxy_* fastcgi_* uwsgi_* scgi_* grpc_* memcached_* ssl ssl_* http2 http3 quic_* upstream "
        "if set rewrite break limit_except auth_basic auth_basic_user_file "
        "satisfy map geo split_clients limit_req limit_req_zone limit_conn "
        "limit_conn_zone sub_filter stream mail js_* perl_* mirror secure_link disable_symlinks"
    ).split()
)

TABLE: dict[str, Directive] = {d.name: d for d in SUPPORTED_DIRECTIVES + IGNORED_DIRECTIVES + REFUSED_DIRECTIVES}
_FAMILIES = sorted((d for d in TABLE.values() if d.name.endswith("*")), key=lambda d: -len(d.name))


def lookup(name: str) -> Directive | None:
    """The table entry for ``name`` (an exact entry wins over a ``family_*`` one)."""
    found = TABLE.get(name)
    if found is not None:
        return found
    return next((d for d in _FAMILIES if name.startswith(d.name[:-1])), None)
