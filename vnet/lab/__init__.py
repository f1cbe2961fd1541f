"""Labs: a whole topology (switches, trunks, VLANs, nodes with several NICs, routers,
impairments) declared in one YAML file and run as processes (vnet/lab/run.py), checked
(load.py), planned (plan.py), pinged across (demo.py) or written as a compose file
(compose.py). docs/lab.md is the file's reference."""

from vnet.lab.load import LabError, load_lab, parse_lab
from vnet.lab.schema import Impairment, Lab, Link, Nic, Node, Stp, Switch

__all__ = ["Impairment", "Lab", "LabError", "Link", "Nic", "Node", "Stp", "Switch", "load_lab", "parse_lab"]
