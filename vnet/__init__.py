"""vnet: the `vnet` command, the control protocol, the embedded LAN and the pytest plugin."""

__version__ = "0.1.0"
