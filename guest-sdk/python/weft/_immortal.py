"""Every object in the build's snapshot made immortal, so that an instance
writes only the pages it changes, not every page whose objects it merely
uses (a reference count is written on each use): `mark()` runs last in the
snapshot and lists the objects; `patch()` then sets their counts in the
component's memory image."""

import bisect
import gc
import struct
import sys

# What the list of objects starts with, for `patch()` to find it.
MAGIC = b"weft-immortal-objects\x00\x01\x02"
# CPython 3.14's initial count of an immortal object on a 32-bit build
# (`_Py_IMMORTAL_INITIAL_REFCNT`): any count from 1 << 30 is immortal.
IMMORTAL = 5 << 28

# The listed objects and the list, held so that both are in the snapshot.
_marked = None


def mark():
    """List every object the interpreter can reach that is not immortal
    yet, for `patch()` to find in the component; the garbage collector
    then leaves them all alone (`gc.freeze`)."""
    global _marked
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 14) or sys.maxsize != 2**31 - 1:
        return
    gc.collect()
    # Each listed object is held, so that none is freed before the snapshot
    # is taken: its first word would then be the allocator's, not a count.
    # (What the walk itself makes comes after the list of objects, so that
    # it is not on the list.)
    todo = gc.get_objects()
    held = []
    seen = set()
    while todo:
        obj = todo.pop()
        address = id(obj)
        if address in seen or sys._is_immortal(obj):
            continue
        seen.add(address)
        held.append(obj)
        todo.extend(gc.get_referents(obj))
    addresses = sorted(seen)
    # Written in place, as the magic and its header must be in memory once:
    # a freed piece of a concatenation would hold them too.
    listed = bytearray(len(MAGIC) + 8 + 4 * len(addresses))
    listed[: len(MAGIC)] = MAGIC
    listed[len(MAGIC) : len(MAGIC) + 8] = _header(len(addresses))
    struct.pack_into(f"<{len(addresses)}I", listed, len(MAGIC) + 8, *addresses)
    _marked = (held, listed)
    gc.freeze()


def patch(component_path):
    """Set the count of every object `mark()` listed in the component at
    `component_path` to immortal; returns how many were set (none in a
    component without the list)."""
    with open(component_path, "rb") as file:
        component = bytearray(file.read())
    by_module = {}
    for module, start, length, offset in _data_segments(component):
        by_module.setdefault(module, []).append((start, length, offset))
    # The module whose memory holds the list: WASI's adapter has a memory
    # of its own.
    for segments in by_module.values():
        memory = _Memory(component, segments)
        listed = memory.find_list()
        if listed is not None:
            break
    else:
        return 0
    patched = 0
    for address in listed:
        where = memory.file_offset(address)
        if where is None:
            continue
        refcount = struct.unpack_from("<I", component, where)[0]
        if 0 < refcount < 1 << 30:
            struct.pack_into("<I", component, where, IMMORTAL)
            patched += 1
    with open(component_path, "wb") as file:
        file.write(component)
    return patched


class _Memory:
    """A module's memory image as its data segments at constant addresses
    give it, read from the component's bytes."""

    def __init__(self, component, segments):
        self.component = component
        self.segments = sorted(segments)

    def _first_at_or_before(self, address):
        """The index of the last segment starting at or before `address`
        (0 if none does)."""
        return max(bisect.bisect_right(self.segments, (address, float("inf"), 0)) - 1, 0)

    def file_offset(self, address, size=4):
        """Where the `size` bytes at `address` are in the file, if they are
        in one segment."""
        start, length, offset = self.segments[self._first_at_or_before(address)]
        if start <= address and address + size <= start + length:
            return offset + address - start
        return None

    def read(self, address, size):
        """`size` bytes of memory from `address`: zeros where no segment
        is (a snapshot leaves runs of zeros out)."""
        out = bytearray(size)
        for start, length, offset in self.segments[self._first_at_or_before(address) :]:
            if start >= address + size:
                break
            low, high = max(start, address), min(start + length, address + size)
            if low < high:
                out[low - address : high - address] = self.component[offset + low - start : offset + high - start]
        return bytes(out)

    def find_list(self):
        """The addresses `mark()` listed: after the magic, the header, then
        the addresses in ascending order."""
        for start, length, offset in self.segments:
            at = self.component.find(MAGIC, offset, offset + length)
            while at >= 0:
                address = start + at - offset + len(MAGIC)
                count = struct.unpack("<I", self.read(address, 4))[0]
                if self.read(address, 8) == _header(count):
                    listed = struct.unpack(f"<{count}I", self.read(address + 8, 4 * count))
                    if all(a < b for a, b in zip(listed, listed[1:])):
                        return listed
                at = self.component.find(MAGIC, at + 1, offset + length)
        return None


def _header(count):
    """What follows the magic: the count, and the count again, inverted, so
    that the magic elsewhere (this module's own constant) is not taken for
    the list."""
    return struct.pack("<II", count, count ^ 0xFFFFFFFF)


def _data_segments(binary, base=0, end=None):
    """(module, memory address, length, file offset) of every active data
    segment at a constant address in the component or module at `base`,
    and in those it holds."""
    end = len(binary) if end is None else end
    is_module = binary[base + 4 : base + 8] == b"\x01\x00\x00\x00"
    pos = base + 8
    while pos < end:
        section = binary[pos]
        size, pos = _leb(binary, pos + 1)
        if is_module and section == 11:  # data
            for segment in _segments_of(binary, pos):
                yield (base, *segment)
        elif not is_module and section in (1, 4):  # a core module, a component
            yield from _data_segments(binary, pos, pos + size)
        pos += size


def _segments_of(binary, pos):
    """(address, length, file offset) of a data section's active segments
    whose address is a constant."""
    count, pos = _leb(binary, pos)
    for _ in range(count):
        flags, pos = _leb(binary, pos)
        address = None
        if flags != 1:  # 1 is passive
            if flags == 2:  # with a memory index
                _, pos = _leb(binary, pos)
            address, pos = _constant_expression(binary, pos)
        length, pos = _leb(binary, pos)
        if address is not None:
            yield address, length, pos
        pos += length


def _constant_expression(binary, pos):
    """An offset expression's value if it is a lone `i32.const`, else None
    (one that reads a global, as in a dynamic library); and where it ends."""
    value, instructions = None, 0
    while binary[pos] != 0x0B:  # end
        opcode = binary[pos]
        instructions += 1
        if opcode == 0x41:  # i32.const
            value, pos = _leb(binary, pos + 1, signed=True)
        elif opcode in (0x23, 0x42):  # global.get, i64.const
            _, pos = _leb(binary, pos + 1)
        else:  # i32.add, i32.sub, i32.mul (extended constants)
            pos += 1
    return (value if instructions == 1 else None), pos + 1


def _leb(binary, pos, signed=False):
    """A LEB128 number at `pos` (a signed one as an i32's bits), and where
    it ends."""
    result = shift = 0
    while True:
        byte = binary[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if signed and byte & 0x40:
                result = (result - (1 << shift)) & 0xFFFFFFFF
            return result, pos
