"""Static files as nginx serves them: the rules, from a URI to a file or an answer.

A location serves files when it (or a level above it) has ``root`` or
``alias`` and it has neither ``websocket`` nor ``websocket_publish``
(``frontdoor.decide`` then returns a ``Static``).  ``resolve`` runs nginx's
phases for it, each step named after the nginx function it follows:

1. **try_files** (``ngx_http_try_files_handler``): each name, evaluated with
   the current ``$uri``, is looked up under the root with ``stat``; a name
   written with a trailing ``/`` must be a directory, any other must not
   be.  The first found becomes the URI and the location goes on with it;
   when none is found, the last argument answers: ``=code``, ``@name``
   (a named location) or a URI with its own arguments (an internal
   redirect).  Errors other than "no such file" are logged at ``crit`` and
   the next name is tried.
2. **index** (``ngx_http_index_handler``), for a URI ending in ``/`` and a
   GET, HEAD or POST: the first index file that exists is served through an
   internal redirect to ``URI + name``; an absolute name is redirected to
   without a check.  A directory that does not exist is 404 (``"..." is not
   found``), one that cannot be searched 403 (``"..." is forbidden``).
3. **the file** (``ngx_http_static_handler``): methods other than GET, HEAD
   and POST are 405; the path is opened (404 for a missing one, 403 for one
   that may not be read, each with nginx's ``open() "..." failed (...)``
   line); a directory is 301 to ``URI/`` (with the arguments); anything but
   a regular file is 404; a POST to a file is 405.
4. **nothing served it** (``ngx_http_core_content_phase``): a URI ending in
   ``/`` is 403, ``directory index of "..." is forbidden`` (no listings:
   ``autoindex`` is always off).

An internal redirect ends ``resolve``: the caller routes the new URI again
(``frontdoor.serve_files``), as ``ngx_http_internal_redirect`` restarts the
request's phases.

The path of a URI is ``ngx_http_map_uri_to_path``'s: ``root`` + URI;
``alias`` + the URI past the location's name; in a regex location the alias
alone (its captures make the path).  The URI has already been normalized
(``routing.normalize_path``: ``%XX`` decoded once, ``.`` and ``..`` resolved,
``//`` merged; ``..`` above the root is a 400), so a URI cannot climb out
of its root.  One rule is nginxws's own (nginx's default, ``disable_symlinks
off``, has none): the file opened must be inside the root or alias once
symbolic links are resolved (``/proc/self/fd``), else 403.  A link that stays
inside is followed; one that leads out is refused, and so is an ``alias``
whose name misses a slash and lets ``/i../x`` reach a sibling directory.

The file system is reached through a ``FileSystem``, which tests replace;
nothing here reads a file's contents.  ``not_modified`` (the 304 and 412 of
``ngx_http_not_modified_filter``), ``etag`` and ``content_type`` complete
the rules of the answer.
"""

from __future__ import annotations

import calendar
import dataclasses
import email.utils
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from nginxws.conf.model import DocumentRoot, FileSettings, TryFiles
from nginxws.conf.variables import Request as Variables
from nginxws.log import os_error_text

FILE_METHODS = frozenset({b"GET", b"HEAD", b"POST"})  # what the index and file handlers take
_NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})
# What ngx_escape_uri(NGX_ESCAPE_URI) escapes in a redirect's Location:
# controls, space, "#", "%", "?", DEL and every byte above it.
_ESCAPE = frozenset(range(0x21)) | {0x23, 0x25, 0x3F} | frozenset(range(0x7F, 0x100))


class FileSystem:
    """The file system calls the rules make (a test passes a stand-in)."""

    def stat(self, path: str) -> os.stat_result:
        return os.stat(path)

    def open(self, path: str) -> tuple[int, os.stat_result]:
        """Open for reading, without blocking on a FIFO, as nginx opens a file to serve."""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return fd, os.fstat(fd)
        except OSError:
            os.close(fd)
            raise

    def where(self, fd: int) -> str:
        """The real path of what ``fd`` opened, every symbolic link resolved (Linux)."""
        return os.readlink(f"/proc/self/fd/{fd}")

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def close(self, fd: int) -> None:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Found:
    """An open regular file to answer with; whoever gets it closes ``fd``."""

    fd: int
    path: str
    size: int
    mtime: int  # seconds, as nginx keeps it
    content_type: str


@dataclass(frozen=True, slots=True)
class Refused:
    """An answer without a file: ``status`` (nginx's page), with what to log.

    ``location`` is the path of a 301 to a directory (the caller makes it
    absolute); ``code`` marks try_files' ``=code``, answered as ``return code``.
    """

    status: int
    log: tuple[str, str] | None = None  # (error_log level, message)
    location: str | None = None
    code: bool = False


@dataclass(frozen=True, slots=True)
class InternalRedirect:
    """Serve ``uri?args`` as if requested, or the named location ``name`` with
    the same URI (nginx's ``ngx_http_internal_redirect``, ``ngx_http_named_location``)."""

    uri: str
    args: str
    name: str | None = None

    @property
    def target(self) -> str:
        """As nginx names it in its "redirection cycle" message."""
        return "@" + self.name if self.name is not None else self.uri


Outcome = Found | Refused | InternalRedirect


# -- paths --------------------------------------------------------------------------


def map_uri_to_path(root: DocumentRoot, uri: str, variables: Variables, add_uri: bool = False) -> tuple[str, int]:
    """nginx's ``ngx_http_map_uri_to_path``: the path of ``uri``, and the
    length of its document-root part (``add_uri``: try_files found a file in a
    regex location with ``alias``, whose alias is then followed by the URI)."""
    if root.path.constant:
        base = root.path.source  # made absolute when the configuration was read
    else:
        base = root.path.evaluate(variables)
        if not base.startswith("/"):
            base = root.prefix + base
    if root.whole:
        return (base + uri if add_uri else base), len(base)
    return base + uri[root.alias or 0 :], len(base)


def containing_directory(root: DocumentRoot, base: str) -> str:
    """What a served file must stay inside: the root or alias as evaluated; in a
    regex location, the alias's literal part up to its last "/" (the rest
    comes from captures)."""
    if not root.whole or root.path.constant:
        return base
    head = root.path.parts[0] if isinstance(root.path.parts[0], str) else ""
    head = head[: head.rfind("/") + 1]
    if head and not head.startswith("/"):
        head = root.prefix + head
    return head or "/"


def _inside(real: str, directory: str) -> bool:
    return real == directory or real.startswith(directory.rstrip("/") + "/")


def extension(uri: str) -> str:
    """nginx's ``ngx_http_set_exten``: what follows the last "." of the last
    segment, unless that dot starts the segment."""
    for i in range(len(uri) - 1, 1, -1):
        ch = uri[i]
        if ch == "." and uri[i - 1] != "/":
            return uri[i + 1 :]
        if ch == "/":
            return ""
    return ""


def content_type(uri: str, files: FileSettings) -> str:
    """The ``Content-Type`` of a file served for ``uri`` (``types``, in any
    case, else ``default_type``)."""
    found = extension(uri)
    if found:
        kind = files.types.get(found.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape"))
        if kind is not None:
            return kind
    return files.default_type


def escape_uri(uri: str) -> str:
    """``ngx_escape_uri(NGX_ESCAPE_URI)``: a path made safe for a Location header."""
    raw = uri.encode("utf-8", "surrogateescape")
    if not any(byte in _ESCAPE for byte in raw):
        return uri
    return "".join(f"%{byte:02X}" if byte in _ESCAPE else chr(byte) for byte in raw)


# -- the phases -----------------------------------------------------------------------


def resolve(files: FileSettings, try_files: TryFiles | None, method: bytes, uri: str, args: str,
            variables: Variables, fs: FileSystem, logs: list[tuple[str, str]]) -> Outcome:
    """What a static location does with a request for ``uri`` (see the module docstring).

    ``variables`` are the request's, with ``uri`` as its ``$uri``.  What is
    to be logged on the way, as (level, message), is appended to ``logs``,
    in nginx's order; a ``Refused`` adds its own line last.
    """
    root = files.root
    assert root is not None, "resolve is for locations with root or alias"
    add_uri = False
    if try_files is not None:
        tried = _try_files(root, try_files, uri, args, variables, fs, logs)
        if not isinstance(tried, tuple):
            return tried
        uri, add_uri = tried
        variables = dataclasses.replace(variables, uri=uri)
    if uri.endswith("/") and method in FILE_METHODS:
        indexed = _index(files, uri, args, variables, add_uri, fs)
        if indexed is not None:
            return indexed
    if method not in FILE_METHODS:
        return Refused(405)
    if uri.endswith("/"):
        path, _ = map_uri_to_path(root, uri, variables, add_uri)
        return Refused(403, ("error", f'directory index of "{path}" is forbidden'))
    return _file(files, method, uri, args, variables, add_uri, fs)


def _try_files(root: DocumentRoot, try_files: TryFiles, uri: str, args: str, variables: Variables,
               fs: FileSystem, logs: list[tuple[str, str]]) -> tuple[str, bool] | Outcome:
    """The URI try_files found (and whether the alias is now followed by it), or its fallback."""
    path, length = map_uri_to_path(root, uri, variables)
    base = path[:length]
    cut = root.alias if root.alias and not root.whole else 0
    for value, directory in try_files.files:
        name = value.evaluate(variables)
        if cut and not value.constant and name.startswith(uri[:cut]):
            name = name[cut:]  # "$uri" names the location's part, which the alias replaces
        try:
            info = fs.stat(base + name)
        except OSError as err:
            if err.errno not in _NOT_FOUND:
                logs.append(("crit", f'stat() "{base + name}" failed {os_error_text(err)}'))
            continue
        if stat.S_ISDIR(info.st_mode) != directory:
            continue
        if root.alias is None:
            return name, False
        if root.whole:
            return (uri, False) if directory else (name, True)
        return uri[:cut] + name, False
    return _fallback(try_files, uri, args, variables)


def _fallback(try_files: TryFiles, uri: str, args: str, variables: Variables) -> Outcome:
    if try_files.code is not None:
        return Refused(try_files.code, code=True)
    target = try_files.fallback.evaluate(variables)
    if target.startswith("@"):
        return InternalRedirect(uri, args, name=target[1:])
    new_uri, _, new_args = target.partition("?")  # ngx_http_split_args: no "?", no arguments
    return InternalRedirect(new_uri, new_args)


def _index(files: FileSettings, uri: str, args: str, variables: Variables, add_uri: bool,
           fs: FileSystem) -> Outcome | None:
    """The index file of a directory URI, or None when it has none."""
    assert files.root is not None
    directory, _ = map_uri_to_path(files.root, uri, variables, add_uri)
    tested = False
    for value in files.index:
        name = value.evaluate(variables)
        if name.startswith("/"):
            return InternalRedirect(name, args)
        path = directory + name
        try:
            fs.stat(path)
        except OSError as err:
            if err.errno in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.EACCES):
                return _index_error(files, path, err)
            if not tested:
                problem = _test_directory(files, directory, path, fs)
                if problem is not None:
                    return problem
                tested = True
            if err.errno == errno.ENOENT:
                continue
            return Refused(500, ("crit", f'stat() "{path}" failed {os_error_text(err)}'))
        return InternalRedirect(uri + name, args)
    return None


def _test_directory(files: FileSettings, directory: str, path: str, fs: FileSystem) -> Refused | None:
    """ngx_http_index_test_dir: why no index file was found, if the directory is the reason."""
    if directory.endswith("/") and len(directory) > 1:
        directory = directory[:-1]
    try:
        info = fs.stat(directory)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return _index_error(files, path, err)
        if err.errno == errno.EACCES:
            return None  # the index file's own lookup went past it, so it may be searched
        return Refused(500, ("crit", f'stat() "{directory}" failed {os_error_text(err)}'))
    if stat.S_ISDIR(info.st_mode):
        return None
    return Refused(500, ("alert", f'"{path}" is not a directory'))


def _index_error(files: FileSettings, path: str, err: OSError) -> Refused:
    if err.errno == errno.EACCES:
        return Refused(403, ("error", f'"{path}" is forbidden {os_error_text(err)}'))
    return Refused(404, ("error", f'"{path}" is not found {os_error_text(err)}') if files.log_not_found else None)


def _file(files: FileSettings, method: bytes, uri: str, args: str, variables: Variables, add_uri: bool,
          fs: FileSystem) -> Outcome:
    """ngx_http_static_handler, for a URI that does not end in "/"."""
    root = files.root
    assert root is not None
    path, length = map_uri_to_path(root, uri, variables, add_uri)
    try:
        fd, info = fs.open(path)
    except OSError as err:
        message = f'open() "{path}" failed {os_error_text(err)}'
        if err.errno in _NOT_FOUND:
            return Refused(404, ("error", message) if files.log_not_found else None)
        if err.errno in (errno.EACCES, errno.ELOOP, errno.EMLINK):
            return Refused(403, ("error", message))
        return Refused(500, ("crit", message))
    refusal = _check_inside(root, path[:length], path, fd, fs)
    if refusal is None:
        if stat.S_ISDIR(info.st_mode):
            location = escape_uri(uri) + "/" + (f"?{args}" if args else "")
            refusal = Refused(301, location=location)
        elif not stat.S_ISREG(info.st_mode):
            refusal = Refused(404, ("crit", f'"{path}" is not a regular file'))
        elif method == b"POST":
            refusal = Refused(405)
    if refusal is not None:
        fs.close(fd)
        return refusal
    return Found(fd, path, info.st_size, int(info.st_mtime), content_type(uri, files))


def _check_inside(root: DocumentRoot, base: str, path: str, fd: int, fs: FileSystem) -> Refused | None:
    """403 when what ``path`` opened lies outside its root or alias (nginxws's rule)."""
    directory = containing_directory(root, base)
    real, real_directory = fs.where(fd), fs.realpath(directory)
    if _inside(real, real_directory):
        return None
    return Refused(403, ("error", f'open() "{path}" refused: it leads to "{real}", outside the '
                                  f'{root.directive} "{directory}"'))


# -- the answer ---------------------------------------------------------------------


def etag(mtime: int, size: int) -> str:
    """nginx's ETag: ``"%xT-%xO"`` of the modification time and the size."""
    return f'"{mtime:x}-{size:x}"'


def http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def parse_http_date(text: bytes) -> int | None:
    """A date in any of HTTP's three formats, as seconds; None when it is not one."""
    try:
        parsed = email.utils.parsedate_tz(text.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed[:9]) - (parsed[9] or 0)
    except (OverflowError, ValueError):
        return None


def _matches(header: bytes, tag: str | None, weak: bool) -> bool:
    """nginx's ``ngx_http_test_if_match``: whether ``tag`` is in the header's list."""
    if header == b"*":
        return True
    if tag is None:
        return False
    if weak and tag.startswith("W/"):
        tag = tag[2:]
    wanted = tag.encode()
    for item in header.split(b","):
        item = item.strip(b" \t")
        if weak and item.startswith(b"W/"):
            item = item[2:]
        if item == wanted:
            return True
    return False


def not_modified(headers: Sequence[tuple[bytes, bytes]], mtime: int, tag: str | None, mode: str) -> int:
    """200, or the 304 / 412 a request's conditional headers make of a file
    (``ngx_http_not_modified_header_filter``; ``mode``: ``if_modified_since``)."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _CONDITIONS and name not in found:
            found[name] = value
    if not found:
        return 200
    unmodified_since = found.get(b"if-unmodified-since")
    if unmodified_since is not None:
        date = parse_http_date(unmodified_since)
        if date is None or date < mtime:
            return 412
    if_match = found.get(b"if-match")
    if if_match is not None and not _matches(if_match, tag, weak=False):
        return 412
    modified_since, none_match = found.get(b"if-modified-since"), found.get(b"if-none-match")
    if modified_since is None and none_match is None:
        return 200
    if modified_since is not None and mode != "off":
        date = parse_http_date(modified_since)
        if date != mtime and (mode == "exact" or date is None or date < mtime):
            return 200
    elif modified_since is not None:
        return 200
    if none_match is not None and not _matches(none_match, tag, weak=True):
        return 200
    return 304


_CONDITIONS = frozenset({b"if-unmodified-since", b"if-match", b"if-modified-since", b"if-none-match"})
