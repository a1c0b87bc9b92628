"""nginxws: a WebSocket push server driven by nginx configuration files."""

__version__ = "0.1.0"
NAME = "nginxws"
