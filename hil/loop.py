"""The closed loop of a simulated run: simulator -> controller -> simulator, every step."""

from edge_agent.indications import MAX_PHASES, RED


def run_loop(sim, decide, duration_s, step_ms=100, progress=None):
    """Drive `sim` with `decide(now_ms, inputs) -> vehicle indications` from 0 to duration_s.

    Indications decided at t are shown until t + step_ms, which is what the
    simulator's next step is told. Before the first decision all phases show
    red. `progress(now_ms, end_ms)` is called once per simulated minute.
    """
    end = round(duration_s * 1000)
    shown = [RED] * (MAX_PHASES + 1)
    t = 0
    while True:
        inputs = sim.step(t, shown)
        if t >= end:
            return
        shown = decide(t, inputs)
        if progress is not None and t % 60_000 == 0:
            progress(t, end)
        t = min(t + step_ms, end)
