"""A pickle machine with resource limits: nesting depth, object count and memo size.

Restricting *which globals* a pickle may name (``find_class``, see :mod:`minivis.io.torch_pth`)
stops it from running code, but a pickle of harmless tuples and lists can still

* crash the interpreter: a 200 KB pickle can build a tuple nested 200,000 deep and use it as a
  dict key; CPython hashes nested tuples recursively in C, without a recursion check, and
  overflows the C stack (a segfault, not an exception);
* exhaust memory: one opcode byte builds a new 56-200 byte container, and the memo opcodes add
  an entry per byte, so a file of a few MB can ask for gigabytes.

:class:`BoundedUnpickler` is the pure-Python unpickler of the standard library
(``pickle._Unpickler``) with every opcode routed through a check. We chose it over a pre-scan of
the opcode stream (``pickletools.genops``) followed by the C unpickler because the depth is
measured on the objects actually built, by the very code that builds them: a pre-scan is a
second interpreter of the pickle language whose model of the stack, the marks and the memo could
disagree with the C one on a crafted stream. (The C unpickler has problems of its own: it sizes
its memo by the largest index a PUT names, so ``LONG_BINPUT 0xFFFFFFFF`` alone asks for 32 GB.)
The cost is speed: ~0.4 us per opcode, ~10 ms for a 700-tensor state dict.

The limits, per pickle:

``MAX_DEPTH = 100``
    containers (tuple, list, dict, set, frozenset and their subclasses) inside containers. A
    container's depth is 1 + the deepest thing put in it, recorded when it is built or extended,
    and a pickle is refused the moment any container exceeds the limit, *before* it can be used
    as a key. Tuples and frozensets (the only containers hashed recursively) are immutable, so
    their depth is exact; a list extended after being put inside another does not raise its
    parent's depth, which only matters to code that walks the result, and that code has its
    own depth limit (``_flatten``). State dicts nest ~5 deep; 100 is far below both CPython's
    recursion limit (1000) and the C stack.
``MAX_OBJECTS = 1_000_000``
    opcodes executed, plus the entries of each container a global's call builds (``OrderedDict
    (pairs)`` copies its argument, so a small pickle could otherwise copy one big list many
    times). Every object the pickle builds costs at least one opcode, and sets (~4x a list) cost
    four. A state dict takes ~30 opcodes per tensor, so this allows ~30,000 tensors; at the limit
    the objects built take < 150 MB.
``MAX_MEMO = 500_000``
    memo entries (each PUT adds one, and one object may be put under many indices; torch.save
    puts ~8 per tensor).

Opcodes that ``torch.save`` never writes and that only serve to instantiate classes or to pass
out-of-band buffers (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4, BYTEARRAY8, NEXT_BUFFER,
READONLY_BUFFER) are refused outright; BYTEARRAY8 would also allocate the size it declares before
reading a byte. BUILD stays: ``torch.save`` uses it to attach a state dict's ``_metadata``.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from itertools import chain
from typing import Any

from minivis.io.errors import FileProblem

MAX_DEPTH = 100
MAX_OBJECTS = 1_000_000
MAX_MEMO = 500_000

_CONTAINERS = (tuple, list, dict, set, frozenset)
_SET_COST = 4  # a set or frozenset is ~4x the size of a list or dict of the same length

# What malformed pickles raise from inside the pure-Python machine (popping an empty stack,
# calling a string, hashing a list, a short read, a bad UTF-8 string ...): all become FileProblem.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, IndexError, KeyError, TypeError,
                 AttributeError, ValueError, struct.error, OverflowError, MemoryError, RecursionError)


def _opcode(name: str) -> int:
    return getattr(pickle, name)[0]


_REFUSED = {_opcode(name): name for name in (
    "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "BYTEARRAY8", "NEXT_BUFFER",
    "READONLY_BUFFER")}
# Opcodes that leave a new container on top of the stack.
_BUILDERS = {_opcode(name) for name in (
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "LIST", "EMPTY_DICT",
    "DICT", "EMPTY_SET", "FROZENSET")}
_SETS = {_opcode("EMPTY_SET"), _opcode("FROZENSET")}
_REDUCE = _opcode("REDUCE")
# Opcodes that add items to the container below them; the items are on the stack beforehand:
# the top one or two (APPEND, SETITEM) or all since the last MARK (the others).
_EXTENDERS = {_opcode("APPEND"): 1, _opcode("SETITEM"): 2, _opcode("APPENDS"): None,
              _opcode("SETITEMS"): None, _opcode("ADDITEMS"): None}
_MEMO_PUTS = {_opcode(name) for name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE")}


class BoundedUnpickler(pickle._Unpickler):
    """``pickle._Unpickler`` refusing, with FileProblem, any pickle over the module's limits.

    Subclasses override ``find_class`` and ``persistent_load`` as usual; objects they return
    count as depth 1 if they are containers.
    """

    dispatch: dict[int, Callable[[BoundedUnpickler], None]] = {}

    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="utf-8")
        self._objects = 0
        # id -> (container, depth) for containers deeper than 1; holding the container keeps
        # its id from being reused while we run. Shallow containers are not stored.
        self._deep: dict[int, tuple[Any, int]] = {}

    def _count(self, n: int) -> None:
        self._objects += n
        if self._objects > MAX_OBJECTS:
            raise FileProblem(f"pickle builds more than {MAX_OBJECTS} objects (the limit)")

    def _depth(self, obj: Any) -> int:
        if not isinstance(obj, _CONTAINERS):
            return 0
        entry = self._deep.get(id(obj))
        return 1 if entry is None else entry[1]

    def _record(self, container: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FileProblem(f"pickle nests containers more than {MAX_DEPTH} deep (the limit)")
        if depth > 1 and isinstance(container, _CONTAINERS) and depth > self._depth(container):
            self._deep[id(container)] = (container, depth)

    def _deepest(self, items: Any) -> int:
        return max(map(self._depth, items), default=0)

    def _measure_top(self) -> None:
        top = self.stack[-1]
        if isinstance(top, _CONTAINERS):
            items = chain.from_iterable(top.items()) if isinstance(top, dict) else top
            self._record(top, 1 + self._deepest(items))


def _checked(code: int, load: Callable[[BoundedUnpickler], None]) -> Callable[[BoundedUnpickler], None]:
    if code in _REFUSED:
        name = _REFUSED[code]

        def refuse(self: BoundedUnpickler) -> None:
            raise FileProblem(f"pickle uses the opcode {name}, which weight files never need")
        return refuse
    if code in _BUILDERS:
        cost = _SET_COST if code in _SETS else 1

        def build(self: BoundedUnpickler) -> None:
            self._count(cost)
            load(self)
            self._measure_top()
        return build
    if code == _REDUCE:
        def reduce(self: BoundedUnpickler) -> None:
            self._count(1)
            load(self)
            top = self.stack[-1]
            if isinstance(top, _CONTAINERS):
                self._count(len(top))
                self._measure_top()
        return reduce
    if code in _EXTENDERS:
        n_items = _EXTENDERS[code]

        def extend(self: BoundedUnpickler) -> None:
            self._count(1)
            items = self.stack if n_items is None else self.stack[-n_items:]
            deepest = self._deepest(items)
            load(self)
            self._record(self.stack[-1], 1 + deepest)
        return extend
    if code in _MEMO_PUTS:
        def put(self: BoundedUnpickler) -> None:
            self._count(1)
            load(self)
            if len(self.memo) > MAX_MEMO:
                raise FileProblem(f"pickle memo holds more than {MAX_MEMO} entries (the limit)")
        return put

    def step(self: BoundedUnpickler) -> None:
        self._count(1)
        load(self)
    return step


BoundedUnpickler.dispatch = {code: _checked(code, load) for code, load in pickle._Unpickler.dispatch.items()}
