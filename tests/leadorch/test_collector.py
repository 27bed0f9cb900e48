"""leadorch.collector: the web server collects garbage when no answer is starting."""

from __future__ import annotations

import gc
import weakref

import pytest

from leadorch.collector import IdleCollector, generation_due

THRESHOLDS = (700, 10, 10)


def _never() -> bool:
    raise AssertionError("the full collection's rule was asked")


@pytest.mark.parametrize(
    ("counts", "full", "expected"),
    [
        ((0, 0, 0), True, None),
        ((700, 11, 10), True, None),  # not past the first threshold yet
        ((701, 0, 0), True, 0),
        ((701, 10, 10), True, 0),
        ((701, 11, 0), True, 1),
        ((701, 11, 9), True, 1),
        ((701, 11, 10), False, 1),  # the oldest generation has not grown enough
        ((701, 11, 10), True, 2),
    ],
)
def test_the_generation_due_is_cpythons_choice(counts, full, expected):
    assert generation_due(counts, THRESHOLDS, full_due=lambda: full) == expected


def test_the_full_rule_is_asked_only_when_a_full_collection_may_be_due():
    assert generation_due((701, 3, 50), THRESHOLDS, full_due=_never) == 0
    assert generation_due((701, 11, 9), THRESHOLDS, full_due=_never) == 1


def test_a_first_threshold_of_zero_collects_nothing():
    assert generation_due((10**6, 100, 100), (0, 10, 10), full_due=_never) is None


@pytest.fixture
def manual_gc():
    """Automatic collection off and a small first threshold, as they were after."""
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.disable()
    gc.collect()
    gc.set_threshold(100, 10, 10)
    yield
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()


class Node:
    other: Node


def garbage_cycle() -> weakref.ref[Node]:
    """Two objects that only refer to each other: only a collection frees them."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def objects(count: int) -> list[list[int]]:
    return [[] for _ in range(count)]


def test_garbage_waits_while_an_answer_starts_and_goes_once_none_does(manual_gc):
    busy = True
    collector = IdleCollector(busy=lambda: busy)
    cycle = garbage_cycle()
    kept = objects(150)  # past the first threshold
    assert collector.collect_if_due() is None
    assert cycle() is not None
    busy = False
    assert collector.collect_if_due() == 0
    assert cycle() is None
    assert len(kept) == 150


def test_nothing_is_collected_before_the_first_threshold(manual_gc):
    collector = IdleCollector(busy=lambda: False)
    cycle = garbage_cycle()
    assert collector.collect_if_due() is None
    assert cycle() is not None


def test_answers_that_keep_starting_put_collection_off_only_so_long(manual_gc):
    collector = IdleCollector(busy=lambda: True, most_deferred=3)
    cycle = garbage_cycle()
    kept = objects(150)
    assert collector.collect_if_due() is None
    kept += objects(200)  # past three times the first threshold
    assert collector.collect_if_due() == 0
    assert cycle() is None


def test_old_garbage_goes_with_the_full_collection_once_the_old_objects_grew(
    manual_gc,
):
    collector = IdleCollector(busy=lambda: False)
    # A cycle that lives long enough to reach the oldest generation, then is dropped.
    first, second = Node(), Node()
    first.other, second.other = second, first
    cycle = weakref.ref(first)
    gc.collect(1)
    del first, second
    kept, collected = [], []
    while 2 not in collected and len(collected) < 20_000:
        assert cycle() is not None, f"freed before a full collection: {collected}"
        kept.append(objects(101))
        generation = collector.collect_if_due()
        if generation is not None:
            collected.append(generation)
    assert collected[-1] == 2
    assert cycle() is None
    # CPython's rhythm until then: a middle collection after every 11 young ones.
    assert collected[:12] == [0] * 11 + [1]
