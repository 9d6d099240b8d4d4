"""Reading `wskctl stats --json` in the Wine lane's checks: a counter by name, wherever the JSON
nests it (by group, or flat)."""


def find(d, key):
    """The value of the first `key` in `d`, depth first; None when there is none."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            r = find(v, key)
            if r is not None:
                return r
    return None
