"""What every backend has, image or text, in this process or on a remote server; and a tiny name → factory registry,
one per backend kind (image, text)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar


class ModelBackend(Protocol):
    """What every backend offers the services: a name, the model it serves and which files those are, its load,
    offload and unload, and its state for the health page. `remote` is a capability, declared once by the class,
    never probed: True where the model runs on another server, which holds its own memory (no offload or unload
    happens here), False in this process."""

    name: str
    remote: bool

    @property
    def model_name(self) -> str:
        """The model as shown in the UI and stored in history."""
        ...

    @property
    def revision(self) -> str:
        """Which files the model was loaded from (a hub snapshot hash, a folder's or file's fingerprint), for cache
        keys and batch shapes; '' where the backend cannot tell (a remote server that does not say)."""
        ...

    def load(self, report: Callable[[str], None]) -> None:
        """Load weights (or check the remote server), or bring offloaded ones back; report() each phase."""
        ...

    def offload(self) -> None:
        """Free GPU memory while idle; the next load() brings the model back (a no-op on the CPU)."""
        ...

    def unload(self) -> None:
        """Free the model's memory."""
        ...

    def describe(self) -> dict[str, Any]:
        """Device, precision and notes for the health page."""
        ...


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
