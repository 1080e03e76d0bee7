"""Path-qualified validation helpers shared by the site and plan parsers.

Every problem is collected, none raised early: a technician fixing a file
wants the whole list at once, each line saying where, what and why.
"""


class ConfigError(ValueError):
    """A configuration or plan failed validation; `errors` lists every problem."""

    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)
        self.site = None      # a site whose structure was sound, when a site failed

    def __reduce__(self):
        # Rebuild from the list, so an error crossing a process boundary
        # (multiprocessing pickles it) keeps its messages whole.
        return (ConfigError, (self.errors,))


class Checker:
    """Collects `path: message` strings while a parser walks a plain dict."""

    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append("%s: %s" % (path, message))

    def raise_if_any(self):
        if self.errors:
            raise ConfigError(self.errors)

    def obj(self, value, path):
        if isinstance(value, dict):
            return value
        self.error(path, "must be an object, got %s" % kind(value))
        return None

    def array(self, value, path):
        if isinstance(value, list):
            return value
        self.error(path, "must be a list, got %s" % kind(value))
        return None

    def boolean(self, d, key, path, default=None):
        if key not in d:
            if default is None:
                self.error(path + "." + key, "is required")
            return default
        v = d[key]
        if v is True or v is False:
            return v
        self.error(path + "." + key, "must be true or false, got %s" % kind(v))
        return default

    def text(self, d, key, path, default=None, choices=None):
        if key not in d:
            if default is None:
                self.error(path + "." + key, "is required")
            return default
        v = d[key]
        if not isinstance(v, str):
            self.error(path + "." + key, "must be a string, got %s" % kind(v))
            return default
        if choices is not None and v not in choices:
            self.error(path + "." + key, "%r is not one of %s" % (v, ", ".join(choices)))
            return default
        return v

    def integer(self, value, path, lo, hi):
        if not is_int(value):
            self.error(path, "must be an integer, got %s" % kind(value))
            return None
        if value < lo or value > hi:
            self.error(path, "%d is outside %d..%d" % (value, lo, hi))
            return None
        return value

    def seconds(self, d, key, path, lo, hi, default=None):
        """A time in seconds with 0.1 s resolution, returned as integer ms."""
        where = path + "." + key
        if key not in d:
            if default is None:
                self.error(where, "is required")
            return default
        v = d[key]
        if not is_number(v):
            self.error(where, "must be a number of seconds, got %s" % kind(v))
            return None
        tenths = round(v * 10)
        if abs(v * 10 - tenths) > 1e-6:
            self.error(where, "%s s is not a multiple of 0.1 s" % (v,))
            return None
        if v < lo or v > hi:
            self.error(where, "%s s is outside %s..%s s" % (fmt(v), fmt(lo), fmt(hi)))
            return None
        return int(tenths) * 100

    def unknown_keys(self, d, allowed, path):
        for key in sorted(k for k in d if k not in allowed):
            self.error(path, "unknown key %r" % (key,))


def is_int(v):
    return isinstance(v, int) and v is not True and v is not False


def is_number(v):
    if v is True or v is False:
        return False
    if isinstance(v, int):
        return -1e12 < v < 1e12
    if isinstance(v, float):
        return v == v and -1e12 < v < 1e12   # rejects nan and inf
    return False


def kind(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def fmt(v):
    """Seconds as a technician writes them: 3.0, 2.5, 12.0."""
    return "%.1f" % v


def ms_s(ms):
    """Integer milliseconds as seconds text, for messages."""
    return "%.1f" % (ms / 1000)
