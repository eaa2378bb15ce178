"""A tiny name → factory registry, one per backend kind (image, text)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name from settings to a backend factory; built-in backends are imported on first use."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...]) -> None:
        self.kind = kind
        # Imported lazily so that reading settings or validating requests never pulls in torch.
        self._builtin_modules = builtin_modules
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class decorator: make a backend available under `name`."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            return factory

        return deco

    def _import_builtins(self) -> None:
        for module in self._builtin_modules:
            importlib.import_module(module)

    def names(self) -> list[str]:
        """Every registered name."""
        self._import_builtins()
        return sorted(self._factories)

    def create(self, name: str, **options: object) -> T:
        """Instantiate the backend registered under `name`; an unknown name lists the known ones."""
        self._import_builtins()
        try:
            factory = self._factories[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} backend {name!r}; choose one of: {', '.join(sorted(self._factories))}"
            ) from None
        return factory(**options)
