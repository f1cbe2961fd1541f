"""``vnet web``: a live web view of a LAN. ``model`` (sans-I/O: samples in, the topology and
rates out), ``poll`` (the poller that samples the daemons once a second), ``captures`` (the
captures the page starts), ``app`` (the aiohttp server), ``static/index.html`` (the page)."""
