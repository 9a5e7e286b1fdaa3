"""Name -> object registries, so that a config string picks a model, method or dataset."""

from typing import Any, Callable


class UserError(Exception):
  """An error caused by the user's input (config, data, workdir).

  The launcher prints its message as one line, without a traceback. Messages say what was
  expected and how to fix it.
  """


class Registry:
  """A mapping from names to objects that reports unknown names with the known ones."""

  def __init__(self, kind: str):
    self.kind = kind
    self._items: dict[str, Any] = {}

  def register(self, name: str) -> Callable[[Any], Any]:
    def add(obj):
      if name in self._items:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._items[name] = obj
      return obj
    return add

  def get(self, name: str) -> Any:
    if name not in self._items:
      raise UserError(f'unknown {self.kind} {name!r}; known: {", ".join(self.names())}')
    return self._items[name]

  def names(self) -> list[str]:
    return sorted(self._items)

  def __contains__(self, name: str) -> bool:
    return name in self._items
