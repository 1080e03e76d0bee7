"""Hardware-in-the-loop rig: simulated intersections, baselines and run harness.

- `hil.scenario`       scenario files: geometry, demand, detectors, the embedded site config
- `hil.demand`         time-of-day demand profiles, platoons, Poisson arrivals
- `hil.sim`            the built-in intersection simulator (IntersectionSim)
- `hil.detector_model` simulated loop detectors (presence, pulses, exact on/off log)
- `hil.measures`       performance measures of a run (delay, stops, queues, AoG, PCD…)
- `hil.fixed_time`     the Webster fixed-time baseline controller
- `hil.loop`           the closed simulator/controller loop
- `hil.rig`            runs of the real agent or the baseline against the simulator
- `hil.sumo`           the bridge to Eclipse SUMO
"""
