"""Run nginxws as a pure echo endpoint for Autobahn: ``nginxws_echo.py --port P [--workers N] [--deflate] [--tls]``.

Writes a configuration into a temporary prefix (``welcome=off`` so the first
message a client gets is its own echo; 16m messages for cases 9.*;
``--deflate``: permessage-deflate on, for cases 12.* and 13.*; ``--tls``:
``listen ... ssl`` with a self-signed certificate made here, for a
``wss://`` run, since Autobahn's client does not check certificates) and
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
        listen 127.0.0.1:{port}{ssl};{certificate}
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
    parser.add_argument("--tls", action="store_true", help="listen ... ssl (wss://), a self-signed certificate")
    args = parser.parse_args()
    prefix = Path(tempfile.mkdtemp(prefix="nginxws-autobahn-"))
    conf = prefix / "nginxws.conf"
    certificate = ""
    if args.tls:
        certificate = (f"\n        ssl_certificate {prefix}/echo.pem;"
                       f"\n        ssl_certificate_key {prefix}/echo.key;")
        _self_signed(prefix / "echo.pem", prefix / "echo.key")
    conf.write_text(CONF.format(
        workers=args.workers, master="on" if args.workers > 1 else "off", prefix=prefix, port=args.port,
        deflate=" deflate=on" if args.deflate else "", ssl=" ssl" if args.tls else "", certificate=certificate,
    ))
    nginxws = str(Path(sys.executable).with_name("nginxws"))
    os.execv(nginxws, [nginxws, "-p", str(prefix), "-c", str(conf)])


def _self_signed(cert: Path, key: Path) -> None:
    """A self-signed certificate for 127.0.0.1 (the ``cryptography`` package of the test extra)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


if __name__ == "__main__":
    main()
