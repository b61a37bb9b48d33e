"""Resolve names given as strings ("relu", "adam", ...) through one small dict per kind.

Only classes listed in a registry can be created from a string or a saved config, so a config
file can never name arbitrary importable code.
"""


def resolve(identifier, registry, kind, **kwargs):
    """Turn ``identifier`` into an object of ``kind``.

    ``identifier`` may be an instance (returned as is), a name from ``registry`` (the class is
    called with ``kwargs``), or a ``{"class_name": ..., "config": {...}}`` dict as written by
    ``serialize``.
    """
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in registry:
            raise ValueError(
                f"unknown {kind} {identifier!r}; valid names are: {', '.join(sorted(registry))}"
            )
        return registry[key](**kwargs)
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        by_class = {cls.__name__: cls for cls in registry.values()}
        if name not in by_class:
            raise ValueError(
                f"unknown {kind} class {name!r} in config; valid classes are: "
                f"{', '.join(sorted(by_class))}"
            )
        return by_class[name].from_config(identifier.get("config", {}))
    return identifier


def serialize(obj):
    """The ``{"class_name", "config"}`` dict that :func:`resolve` turns back into ``obj``."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


class Configurable:
    """``get_config()`` / ``from_config()`` for objects whose config is their constructor args."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
