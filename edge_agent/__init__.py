"""edge-agent core: a pure, MicroPython-portable actuated signal controller.

Time comes in as integer milliseconds; nothing here does I/O. The only door
into the core is `edge_agent.agent.Agent.step`.
"""

__version__ = "0.1.0"
