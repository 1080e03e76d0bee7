"""SUMO (Eclipse SUMO, from PyPI) as the intersection of the HIL rig.

    from hil.sumo import SumoBridge, run_sumo_program, build_network

Install: pip install eclipse-sumo==1.28.0 libsumo==1.28.0 traci==1.28.0
"""

from hil.sumo.build import (build_network, sumo_available, sumo_binary, load_mapping,  # noqa: F401
                            load_site, DEFAULT_DEMAND, NETWORK_DIR)
from hil.sumo.bridge import SumoBridge, StepResult, run_sumo_program, LINK_STATE  # noqa: F401

__all__ = ["build_network", "sumo_available", "sumo_binary", "load_mapping", "load_site",
           "DEFAULT_DEMAND", "NETWORK_DIR", "SumoBridge", "StepResult", "run_sumo_program",
           "LINK_STATE"]
