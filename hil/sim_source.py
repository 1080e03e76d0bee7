"""The built-in simulator as the running agent's detector source and virtual signal output.

    sim = SimSource("suburban", seed=1)
    runtime = Runtime(site, prov, link, sources=[sim], outputs=[sim, ...])

Each control step the runtime calls `read(now_ms, inputs)`: the simulator
advances its world to `now_ms` under the indications last written and fills
the step's detector levels, on-edges and push buttons. `write(now_ms, out)`
is the virtual load-switch bank: the indications shown until the next step.
Time is the runtime's real time; nothing is accelerated.
"""

from edge_agent.indications import MAX_PHASES, RED

from hil.scenario import load_scenario
from hil.sim import IntersectionSim


class SimSource:
    """Simulated detectors in, simulated signal heads out."""

    def __init__(self, scenario, seed=None, name=None):
        self.scenario = load_scenario(scenario)
        self.sim = IntersectionSim(self.scenario, seed)
        self.name = name or "sim:%s" % self.scenario.name
        self.shown = [RED] * (MAX_PHASES + 1)
        self.steps = 0
        self.writes = 0
        self.origin = None            # the runtime's ms at the first step: simulated time 0

    @property
    def site(self):
        """The scenario's embedded site (a dict): the agent must run this site."""
        return self.scenario.site

    def start(self):
        pass

    def stop(self):
        pass

    def read(self, now, inputs):
        if self.origin is None:
            self.origin = now
        si = self.sim.step(now - self.origin, self.shown)
        self.steps += 1
        inputs.detectors = _merge(inputs.detectors, si.detectors)
        inputs.pulses = _merge(inputs.pulses, si.pulses)
        inputs.peds = _merge(inputs.peds, si.peds)

    def write(self, now, out):
        self.shown = out.vehicle
        self.writes += 1

    def stats(self):
        return {"steps": self.steps, "vehicles_in_system": self.sim.vehicles_in_system()}


def _merge(a, b):
    if not a:
        return b
    if not b:
        return a
    c = dict(a)
    c.update(b)
    return c
