"""Signal indications: what each phase shows, as small integer constants."""

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Vehicle indications (one per phase, lists indexed by phase number 1..16).
DARK = const(0)
RED = const(1)
YELLOW = const(2)
GREEN = const(3)
FLASH_RED = const(4)
FLASH_YELLOW = const(5)

# Pedestrian indications.
DONT_WALK = const(0)
WALK = const(1)
PED_CLEAR = const(2)      # flashing don't walk
PED_DARK = const(3)

MAX_PHASES = const(16)

VEHICLE_NAMES = ("dark", "red", "yellow", "green", "flash-red", "flash-yellow")
PED_NAMES = ("dont-walk", "walk", "ped-clear", "dark")
VEHICLE_LETTERS = ".RYGrY"
PED_LETTERS = "DWFd"
