"""Run nginxws as a pure echo endpoint for Autobahn: ``nginxws_echo.py --port P [--workers N] [--deflate]``.

Writes a configuration into a temporary prefix (``welcome=off`` so the first
message a client gets is its own echo; 16m messages for cases 9.*;
``--deflate``: permessage-deflate on, for cases 12.* and 13.*) and
replaces itself with the installed ``nginxws`` in the foreground, so the
harness stops it by its pid.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

CONF = """\
worker_processes {workers};
master_process {master};
daemon off;
error_log {prefix}/error.log warn;
pid {prefix}/nginxws.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location /echo {{
            websocket welcome=off max_message_size=16m pingintvl=5m idleintvl=6m{deflate};
        }}
    }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deflate", action="store_true", help="websocket deflate=on")
    args = parser.parse_args()
    prefix = Path(tempfile.mkdtemp(prefix="nginxws-autobahn-"))
    conf = prefix / "nginxws.conf"
    conf.write_text(CONF.format(
        workers=args.workers, master="on" if args.workers > 1 else "off", prefix=prefix, port=args.port,
        deflate=" deflate=on" if args.deflate else "",
    ))
    nginxws = str(Path(sys.executable).with_name("nginxws"))
    os.execv(nginxws, [nginxws, "-p", str(prefix), "-c", str(conf)])


if __name__ == "__main__":
    main()
