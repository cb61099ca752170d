"""homeserver/storage/lru.py: eviction order and weights, with and without a weigher."""
from homeserver.storage.lru import LruCache


def test_unweighted_cache_evicts_least_recently_used_and_keeps_none_values():
    c = LruCache(3)
    for i in range(3):
        c.set(i, None if i == 0 else i)
    assert c.get(0, "missing") is None  # a stored None is a hit, and 0 becomes the most recent
    c.set(3, 3)
    assert 1 not in c and 0 in c and len(c) == 3 and c.weight == 3
    assert c.get(1, "missing") == "missing"
    c.set(2, 20)  # replacing does not grow the weight
    assert c.weight == 3 and c.get(2) == 20
    assert c.pop(3) == 3 and c.weight == 2 and c.pop(3, "gone") == "gone"
    c.clear()
    assert len(c) == 0 and c.weight == 0


def test_weighted_cache_counts_replaced_values_once_and_refuses_oversized_ones():
    c = LruCache(10, weigher=len)
    c.set("a", "x" * 4)
    c.set("b", "x" * 4)
    c.set("a", "x" * 5)
    assert c.weight == 9
    c.set("c", "x" * 3)  # 12 > 10: the least recently used ("b") goes
    assert "b" not in c and c.weight == 8
    c.set("big", "x" * 11)
    assert "big" not in c and c.weight == 8
    assert c.pop("a") == "x" * 5 and c.weight == 3
    c.clear()
    assert len(c) == 0 and c.weight == 0
