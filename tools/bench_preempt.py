"""Emergency-vehicle preemption on the SUMO arterial: EV and car time loss without and with."""

import platform

TARGET_EV = -50.0     # % EV time loss: the city's "half the time"
TARGET_CARS = 10.0    # % car time loss at most


def add_arguments(p):
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated SUMO seeds (default 1..5)")
    p.add_argument("--duration", type=float, default=3600.0, help="simulated seconds per run (default 3600)")
    p.add_argument("--every", type=float, default=300.0,
                   help="mean seconds between emergency vehicles (default 300: 12 an hour)")


def run(args):
    from hil.sumo.build import sumo_available
    from hil.sumo.preempt_bench import run_pair, line, mean
    if not sumo_available():
        print("SUMO is not installed (pip install the project's 'sumo' extra)")
        return 1
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    print("machine: %s, %s; %s %s" % (platform.machine(), platform.processor() or platform.platform(),
                                      platform.python_implementation(), platform.python_version()))
    print("SUMO arterial (hil/sumo/network), default demand, %g s per run, an emergency vehicle "
          "every %g s on average (vClass emergency, obeying signals), detected 300 m upstream"
          % (args.duration, args.every))
    pairs = []
    for seed in seeds:
        without, with_ = run_pair(seed, args.duration, args.every)
        pairs.append((without, with_))
        print("seed %d (%d EVs, %d preempts): %s" % (seed, len(with_["ev"]), with_["preempts"],
                                                     line(without, with_)))
    agg = [{"ev": [mean(p[i]["ev"]) for p in pairs], "cars": [mean(p[i]["cars"]) for p in pairs]}
           for i in (0, 1)]
    print("mean of %d seeds: %s" % (len(seeds), line(agg[0], agg[1])))
    ev0, ev1 = mean(agg[0]["ev"]), mean(agg[1]["ev"])
    c0, c1 = mean(agg[0]["cars"]), mean(agg[1]["cars"])
    z, c = 100.0 * (ev1 - ev0) / ev0, 100.0 * (c1 - c0) / c0
    print("target: EV time loss %.0f %% or better (%s), cars +%.0f %% at most (%s)"
          % (TARGET_EV, "met" if z <= TARGET_EV else "NOT met",
             TARGET_CARS, "met" if c <= TARGET_CARS else "NOT met"))
    return 0
