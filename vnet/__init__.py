"""vnet: a virtual Ethernet LAN for containers and processes.

One import name for the whole product: ``vnet.node`` (the driver model, host stack and node
daemon; the repository's ``node/``), ``vnet.switch`` (the learning switch; ``switch/``),
``vnet.compose`` (the image and compose files; ``compose/``), and here the front end: the
``vnet`` command, the control protocol, the embedded and Docker LANs and the pytest plugin.
"""

__version__ = "0.2.0"
