"""Offsets for buffers with known lifetimes that reach, or come close to, the lower bound.

The problem is dynamic storage allocation: each buffer is a rectangle (lifetime x bytes)
that may slide only vertically, and the arena is the highest top. The largest sum of
sizes live at one time is a lower bound that TFLM's GreedyMemoryPlanner (largest first,
lowest gap) misses on some graphs: on MobileNetV1-0.25 at 96x96 it puts a 36,864-byte
buffer where two later 18,432-byte neighbours then stack above it (73,728 B against a
bound of 55,296 B). Two solvers, both deterministic (budgets count work, never seconds):

- ``heuristic``: first fit (lowest offset that fits) and best fit (tightest gap) over
  several orders (size, lifetime, area, start, end, buffers of the busiest time first),
  then a seeded local search over the best order;
- ``branch_and_bound``: an exact search over "gravity" placements (every buffer rests at
  0 or on the top of a buffer live at the same time, which some optimal solution always
  does) in non-decreasing offset order; a node's bound is, per time, the highest top of a
  placed buffer plus the sizes still to place. It stops at the lower bound or when its
  node budget is spent, keeping the best solution found.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Sequence


#: The exact search recurses once per item (Python allows ~1,000 frames); beyond this the
#: heuristic's answer stands.
MAX_EXACT_ITEMS = 500


@dataclass(frozen=True)
class Item:
    """A buffer to place: size in bytes, first and last time it is live (inclusive)."""

    size: int
    first: int
    last: int


@dataclass(frozen=True)
class Solution:
    """Offsets per item, the arena they need, the bound, and how they were found."""

    offsets: tuple[int, ...]
    size: int
    lower_bound: int
    method: str
    optimal: bool  # size == lower bound, or the exact search finished


def overlap(a: Item, b: Item) -> bool:
    return not (a.first > b.last or b.first > a.last)


def lower_bound(items: Sequence[Item]) -> int:
    """The largest sum of sizes live at one time: no placement can need less."""
    events: dict[int, int] = {}
    for it in items:
        events[it.first] = events.get(it.first, 0) + it.size
        events[it.last + 1] = events.get(it.last + 1, 0) - it.size
    best = load = 0
    for t in sorted(events):
        load += events[t]
        best = max(best, load)
    return best


def place(items: Sequence[Item], order: Sequence[int], *, best_fit: bool = False) -> list[int]:
    """Place ``items`` one by one in ``order``: each at the lowest (or tightest) gap among
    the already placed items it overlaps in time."""
    offsets = [-1] * len(items)
    placed: list[int] = []
    for i in order:
        want = items[i]
        busy = sorted((offsets[j], offsets[j] + items[j].size) for j in placed if overlap(want, items[j]))
        chosen, waste, cursor = -1, 0, 0
        for start, end in busy:
            gap = start - cursor
            if gap >= want.size:
                if not best_fit:
                    chosen = cursor
                    break
                if chosen < 0 or gap - want.size < waste:
                    chosen, waste = cursor, gap - want.size
            cursor = max(cursor, end)
        offsets[i] = chosen if chosen >= 0 else cursor
        placed.append(i)
    return offsets


def extent(items: Sequence[Item], offsets: Sequence[int]) -> int:
    return max((o + it.size for o, it in zip(offsets, items)), default=0)


def _orders(items: Sequence[Item]) -> dict[str, list[int]]:
    """Candidate placement orders, by name; ties always fall back to the item index."""
    n = range(len(items))
    busiest = _busiest_time(items)
    keys: dict[str, Callable[[int], tuple]] = {
        "size": lambda i: (-items[i].size, i),
        "lifetime": lambda i: (-(items[i].last - items[i].first), -items[i].size, i),
        "area": lambda i: (-items[i].size * (items[i].last - items[i].first + 1), i),
        "start": lambda i: (items[i].first, -items[i].size, i),
        "end": lambda i: (-items[i].last, -items[i].size, i),
        "peak-first": lambda i: (not (items[i].first <= busiest <= items[i].last), -items[i].size, i),
    }
    return {name: sorted(n, key=key) for name, key in keys.items()}


def _busiest_time(items: Sequence[Item]) -> int:
    load: dict[int, int] = {}
    for it in items:
        for t in range(it.first, it.last + 1):
            load[t] = load.get(t, 0) + it.size
    return min((t for t in load if load[t] == max(load.values())), default=0)


def heuristic(items: Sequence[Item], *, iterations: int = 400, seed: int = 0) -> Solution:
    """The best first-fit/best-fit placement over several orders, improved by local search."""
    bound = lower_bound(items)
    best: tuple[int, list[int], str, list[int]] | None = None
    for name, order in _orders(items).items():
        for fit in (False, True):
            offsets = place(items, order, best_fit=fit)
            size = extent(items, offsets)
            if best is None or size < best[0]:
                best = (size, offsets, f"{'best' if fit else 'first'} fit by {name}", order)
    assert best is not None or not items
    if best is None:
        return Solution((), 0, 0, "empty", True)
    size, offsets, method, order = best
    start = method.split(" by ")[-1]
    rng = random.Random(seed)
    n = len(items)
    # Fewer moves on big graphs: each evaluation costs ~n^2 overlap tests.
    budget = min(iterations, max(10, 4_000_000 // max(1, n * n)))
    for _ in range(budget if n > 1 and size > bound else 0):
        i, j = rng.randrange(n), rng.randrange(n)
        trial = list(order)
        trial.insert(j, trial.pop(i))
        candidate = place(items, trial)
        cost = extent(items, candidate)
        if cost <= size:
            if cost < size:
                method = f"first fit, local search from the {start} order"
            size, offsets, order = cost, candidate, trial
            if size <= bound:
                break
    return Solution(tuple(offsets), size, bound, method, size <= bound)


def branch_and_bound(items: Sequence[Item], incumbent: Solution, *, node_budget: int = 20_000) -> Solution:
    """Exact search (see the module docstring) from ``incumbent``; returns the better one."""
    n = len(items)
    bound = lower_bound(items)
    if n == 0 or incumbent.size <= bound:
        return replace(incumbent, lower_bound=bound, optimal=True)
    if n > MAX_EXACT_ITEMS:
        return replace(incumbent, lower_bound=bound)
    t0 = min(it.first for it in items)
    times = max(it.last for it in items) - t0 + 1
    # A node costs ~n x times steps: big graphs get fewer nodes, never less than one full descent.
    node_budget = min(node_budget, max(n + 1, 50_000_000 // (n * times)))
    span = [(it.first - t0, it.last - t0 + 1) for it in items]
    top = [0] * times  # highest end of a placed buffer live at each time
    rem = [0] * times  # bytes still to place, live at each time
    for (a, b), it in zip(span, items):
        for t in range(a, b):
            rem[t] += it.size
    offsets = [-1] * n
    best_size, best_offsets = incumbent.size, list(incumbent.offsets)
    nodes = 0
    unplaced = set(range(n))
    complete = True

    def search(level: int, last: int, height: int) -> bool:
        """True when the search must stop (bound reached or budget spent)."""
        nonlocal best_size, best_offsets, nodes, complete
        if not unplaced:
            if height < best_size:
                best_size, best_offsets = height, list(offsets)
            return best_size <= bound
        nodes += 1
        if nodes > node_budget:
            complete = False
            return True
        if max(height, max(max(level, top[t]) + rem[t] for t in range(times))) >= best_size:
            return False
        children = []
        for k in unplaced:
            a, b = span[k]
            o = max(top[a:b])
            if o < level:
                if not any(j != k and overlap(items[j], items[k]) for j in unplaced):
                    return False  # k could never rest on anything any more: not a gravity placement
                continue
            if o == level and k < last:
                continue  # buffers at one offset never overlap in time: place them in index order
            children.append((o, k))  # at one offset, index order: the order the rule above allows
        for o, k in sorted(children):
            a, b = span[k]
            end = o + items[k].size
            saved = top[a:b]
            for t in range(a, b):
                top[t] = max(top[t], end)
                rem[t] -= items[k].size
            offsets[k] = o
            unplaced.discard(k)
            stop = search(o, k, max(height, end))
            unplaced.add(k)
            offsets[k] = -1
            top[a:b] = saved
            for t in range(a, b):
                rem[t] += items[k].size
            if stop:
                return True
        return False

    search(0, -1, 0)
    if best_size < incumbent.size:
        return Solution(tuple(best_offsets), best_size, bound, f"exact search ({nodes} nodes)",
                        complete or best_size <= bound)
    return Solution(incumbent.offsets, incumbent.size, bound, incumbent.method,
                    incumbent.optimal or (complete and nodes <= node_budget))


def solve(items: Sequence[Item], *, node_budget: int = 20_000, iterations: int = 400) -> Solution:
    """The heuristic, then the exact search where the heuristic did not reach the bound."""
    first = heuristic(items, iterations=iterations)
    if first.optimal:
        return first
    return branch_and_bound(items, first, node_budget=node_budget)


__all__ = ["Item", "Solution", "branch_and_bound", "extent", "heuristic", "lower_bound", "overlap", "place", "solve"]
