"""TLS settings -> ``ssl.SSLContext``, and the checks ``nginx -t`` makes of them.

The model carries paths and values (``model.Ssl``), never a context, so it
stays picklable; whoever serves TLS builds the context from it with
:func:`server_context`: each worker when it starts, and ``conf.load`` once
per distinct setting, so that ``-t``, a start and a reload refuse a
certificate that does not load, a key that does not, or a pair that does
not match, with nginx's messages (``ngx_ssl_certificate``):

* ``cannot load certificate "F": BIO_new_file() failed (2: No such file or directory)``
* ``cannot load certificate "F": PEM_read_bio_X509_AUX() failed (SSL: ...)``
* ``cannot load certificate key "F": PEM_read_bio_PrivateKey() failed (SSL: ...)``
* ``SSL_CTX_use_PrivateKey("F") failed (SSL: [X509: KEY_VALUES_MISMATCH] key values mismatch)``

where ``...`` is the reason the ``ssl`` module gives.  nginx prints these
without a place; nginxws adds the place of the ``ssl_certificate`` (or
``ssl_certificate_key``) directive.  Reading a file here is like reading an
``include``: nothing opens a socket.
"""

from __future__ import annotations

import errno
import os
import re
import ssl
import warnings
from collections.abc import Sequence

from nginxws.conf.drafts import HttpDraft, ServerDraft
from nginxws.conf.errors import ConfigError
from nginxws.conf.model import (
    DEFAULT_SSL_CIPHERS,
    DEFAULT_SSL_PROTOCOLS,
    Certificate,
    Server,
    Ssl,
    Where,
    websocket_locations,
)

# The versions OpenSSL may still speak, oldest first; SSLv2 never (nginx's
# name is accepted), SSLv3 only where this OpenSSL was built with it.
_VERSIONS = tuple(
    (name, version)
    for name, version, available in (
        ("SSLv3", ssl.TLSVersion.SSLv3, ssl.HAS_SSLv3),
        ("TLSv1", ssl.TLSVersion.TLSv1, ssl.HAS_TLSv1),
        ("TLSv1.1", ssl.TLSVersion.TLSv1_1, ssl.HAS_TLSv1_1),
        ("TLSv1.2", ssl.TLSVersion.TLSv1_2, ssl.HAS_TLSv1_2),
        ("TLSv1.3", ssl.TLSVersion.TLSv1_3, ssl.HAS_TLSv1_3),
    )
    if available
)
_NO_VERSION = {
    "SSLv3": ssl.OP_NO_SSLv3, "TLSv1": ssl.OP_NO_TLSv1, "TLSv1.1": ssl.OP_NO_TLSv1_1,
    "TLSv1.2": ssl.OP_NO_TLSv1_2, "TLSv1.3": ssl.OP_NO_TLSv1_3,
}
# nginx's ALPN for HTTP/1.x servers (NGX_HTTP_ALPN_PROTOS): a browser then
# knows the connection speaks HTTP/1.1, the WebSocket handshake's version.
ALPN = ["http/1.1", "http/1.0"]
_SSL_C_PLACE = re.compile(r"\s*\(_ssl\.c:\d+\)$")

NO_KEY = 'no "ssl_certificate_key" is defined for certificate "{path}"'
NO_CERTIFICATE_FOR_LISTEN = 'no "ssl_certificate" is defined for the "listen ... ssl" directive'
NO_CERTIFICATE_FOR_PUSH = 'no "ssl_certificate" is defined for the "push_ssl=on" parameter of the "websocket" directive'


def merge_ssl(http: HttpDraft, server: ServerDraft) -> Ssl:
    """A server's TLS settings: what it sets, else what the http block sets
    (nginx's merge: a level's list of certificates replaces the inherited one)."""
    values = {**http.ssl, **server.ssl}
    certificates: list = values.get("ssl_certificate", [])  # type: ignore[assignment]
    keys: list = values.get("ssl_certificate_key", [])  # type: ignore[assignment]
    if len(keys) < len(certificates):
        path, where = certificates[-1]
        raise _error(NO_KEY.format(path=path), where)
    ciphers, ciphers_where = values.get("ssl_ciphers", (DEFAULT_SSL_CIPHERS, None))  # type: ignore[misc]
    return Ssl(
        certificates=tuple(Certificate(cert, key, where, key_where)
                           for (cert, where), (key, key_where) in zip(certificates, keys)),
        passwords=values.get("ssl_password_file"),  # type: ignore[arg-type]
        protocols=tuple(values.get("ssl_protocols", DEFAULT_SSL_PROTOCOLS)),  # type: ignore[arg-type]
        ciphers=ciphers,
        ciphers_where=ciphers_where,
        prefer_server_ciphers=values.get("ssl_prefer_server_ciphers", False),  # type: ignore[arg-type]
        session_tickets=values.get("ssl_session_tickets", True),  # type: ignore[arg-type]
    )


def check_ssl(servers: Sequence[Server]) -> None:
    """What nginx checks of TLS once the http block is read, in its order:
    every server's certificates load (each distinct setting once); every
    ``listen ... ssl`` address has a certificate in its default server; and
    (nginxws's own) a ``push_ssl=on`` server has one."""
    loaded: set[Ssl] = set()
    for server in servers:
        if server.ssl.certificates and server.ssl not in loaded:
            server_context(server.ssl)
            loaded.add(server.ssl)
    for default in _ssl_default_servers(servers):
        if not default.ssl.certificates:
            raise _error(NO_CERTIFICATE_FOR_LISTEN, default.where)
    for server in servers:
        first = next(websocket_locations(server.locations), None)
        if first is not None and first.websocket.push_ssl and not server.ssl.certificates:
            raise _error(NO_CERTIFICATE_FOR_PUSH, first.where)


def _ssl_default_servers(servers: Sequence[Server]) -> list[Server]:
    """The default server of each ``ssl`` listen address, in file order."""
    defaults: dict[tuple, Server] = {}
    for server in servers:
        for listen in server.listens:
            if listen.ssl and (listen.key not in defaults or listen.default_server):
                defaults[listen.key] = server
    # by identity: a server's settings hold tables (types) that do not hash
    return list({id(server): server for server in defaults.values()}.values())


def server_context(settings: Ssl) -> ssl.SSLContext:
    """A server-side context for ``settings``, its certificates loaded.

    Raises ConfigError with nginx's message for a file that does not load.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # nginx refuses client-initiated renegotiation; Python's default of
    # preferring the server's cipher order is nginx's "off" only when asked.
    options = context.options | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.prefer_server_ciphers:
        options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if not settings.session_tickets:
        options |= ssl.OP_NO_TICKET
    with warnings.catch_warnings():
        # TLSv1, TLSv1.1 and OpenSSL's per-version switches are deprecated by
        # the ssl module, and still honoured.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.options = _versions(context, settings.protocols, options)
    try:
        context.set_ciphers(settings.ciphers)
    except ssl.SSLError as err:
        raise _error(f'SSL_CTX_set_cipher_list("{settings.ciphers}") failed (SSL: {ssl_reason(err)})',
                     settings.ciphers_where) from None
    context.set_alpn_protocols(ALPN)
    for certificate in settings.certificates:
        load_certificate(context, certificate, settings.passwords)
    return context


def _versions(context: ssl.SSLContext, protocols: tuple[str, ...], options: int) -> int:
    """Set the lowest and highest version of ``protocols``; the options with
    every version in between that is not named switched off."""
    enabled = [(name, version) for name, version in _VERSIONS if name in protocols]
    if not enabled:
        return options | ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1 | ssl.OP_NO_TLSv1_2 | ssl.OP_NO_TLSv1_3
    context.minimum_version = enabled[0][1]
    context.maximum_version = enabled[-1][1]
    for name, version in _VERSIONS[_VERSIONS.index(enabled[0]): _VERSIONS.index(enabled[-1])]:
        if (name, version) not in enabled:
            options |= _NO_VERSION[name]
    return options


def load_certificate(context: ssl.SSLContext, certificate: Certificate, passwords: tuple[bytes, ...] | None) -> None:
    """Load one certificate (and its chain) and its key into ``context``,
    trying each password in order for an encrypted key, as nginx does."""
    cert, key = certificate.path, certificate.key
    _readable(cert, f'cannot load certificate "{cert}"', certificate.where)
    _readable(key, f'cannot load certificate key "{key}"', certificate.key_where)
    # Without a password file the callback still answers (with nothing), so
    # an encrypted key fails instead of OpenSSL asking the terminal for one.
    failure: BaseException | None = None
    for password in passwords or (b"",):
        try:
            context.load_cert_chain(cert, key, password=lambda password=password: password)
            return
        except (ssl.SSLError, OSError, ValueError) as err:  # ValueError: a password over 1 KiB
            failure = err
        if isinstance(failure, ssl.SSLError) and failure.reason == "KEY_VALUES_MISMATCH":
            raise _error(f'SSL_CTX_use_PrivateKey("{key}") failed (SSL: {ssl_reason(failure)})',
                         certificate.key_where)
    problem = _certificate_problem(cert)
    if problem is not None:
        raise _error(f'cannot load certificate "{cert}": PEM_read_bio_X509_AUX() failed (SSL: {problem})',
                     certificate.where)
    raise _error(f'cannot load certificate key "{key}": PEM_read_bio_PrivateKey() failed '
                 f"(SSL: {ssl_reason(failure)})", certificate.key_where)


def _readable(path: str, what: str, where: Where | None) -> None:
    """nginx's first step, ``BIO_new_file()``: the file must open."""
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        code = err.errno or errno.EIO
        raise _error(f"{what}: BIO_new_file() failed ({code}: {os.strerror(code)})", where) from None


def _certificate_problem(path: str) -> str | None:
    """Why the certificates of ``path`` do not load, or None when they do.

    ``load_cert_chain`` gives one reason for a bad certificate and a bad key
    alike; loading the file as certificates alone tells them apart.
    """
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=path)
    except ssl.SSLError as err:
        return ssl_reason(err)
    except OSError as err:
        return f"{err.errno}: {err.strerror}"
    return None


def ssl_reason(err: BaseException) -> str:
    """The reason an ``ssl`` error gives, without the ``(_ssl.c:N)`` of its source."""
    text = getattr(err, "strerror", None)
    if not isinstance(text, str) or not text:
        text = " ".join(str(arg) for arg in _flat(err.args)) or type(err).__name__
    return _SSL_C_PLACE.sub("", text)


def _flat(args: tuple) -> list:
    found: list = []
    for arg in args:
        found.extend(_flat(arg) if isinstance(arg, tuple) else [arg])
    return found


def _error(message: str, where: Where | None) -> ConfigError:
    return ConfigError(message, where.file if where else None, where.line if where else None)
