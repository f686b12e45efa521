"""Progress reporting without printing: the library calls a factory, the CLI passes a tqdm one."""

from __future__ import annotations

from typing import Any, Callable, Protocol

__all__ = ["Progress", "ProgressFactory", "null_progress"]


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> Any: ...

    def close(self) -> Any: ...


ProgressFactory = Callable[..., Progress]  # factory(total=..., desc=..., unit=..., leave=...)


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def null_progress(**_: Any) -> Progress:
    return _Null()
