"""Registry of network factories by name, as timm's ``register_model``.

Model cards name an architecture (``"mobileuvit_s"``) and a config dict; the engine calls :func:`create_model` with
both, so a new architecture only needs a decorated factory in its own file.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

ModelFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the architecture ``name`` with keyword overrides of its default configuration."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(list_models())}") from None
    return factory(**kwargs)
