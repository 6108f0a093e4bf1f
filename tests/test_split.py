from tunebench.data import Example, make_splits

EXAMPLES = [Example(str(i), f"article {i}", f"summary {i}") for i in range(50)]


def test_split_is_seeded_disjoint_and_stable():
    a = make_splits(EXAMPLES, n_val=5, n_test=10, seed=3)
    b = make_splits(list(reversed(EXAMPLES)), n_val=5, n_test=10, seed=3)  # row order does not matter
    assert a.ids() == b.ids() and a.sizes() == {"train": 35, "val": 5, "test": 10}
    ids = a.ids()
    assert not set(ids["train"]) & set(ids["val"]) and not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])
    assert make_splits(EXAMPLES, 5, 10, seed=4).ids()["test"] != ids["test"]
    # changing one held-out size leaves the other held-out set as it was
    assert make_splits(EXAMPLES, 5, 20, seed=3).ids()["val"] == ids["val"]
    assert make_splits(EXAMPLES, 8, 10, seed=3).ids()["test"] == ids["test"]


def test_cap_on_training_pairs():
    assert make_splits(EXAMPLES, 5, 5, seed=0, max_train=7).sizes()["train"] == 7
