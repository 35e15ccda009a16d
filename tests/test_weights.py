import pytest
import torch

from accumbug.config import TrainConfig
from accumbug.lessons.weights import bitwise_equal, same_weights, toy_sgd, trained_weights
from accumbug.trackers import ExactTracker

TINY = TrainConfig(preset="tiny", epochs=1, samples=264, classes=16)


def test_bitwise_equal_is_byte_equality():
    assert bitwise_equal({"w": torch.tensor([float("nan"), 1.0])}, {"w": torch.tensor([float("nan"), 1.0])})
    assert not bitwise_equal({"w": torch.tensor([0.0])}, {"w": torch.tensor([-0.0])})
    assert not bitwise_equal({"w": torch.tensor([1.0])}, {"v": torch.tensor([1.0])})
    assert not bitwise_equal({"w": torch.tensor([1.0])}, {"w": torch.tensor([1.0], dtype=torch.float64)})


def test_trackers_do_not_touch_training_but_the_random_seed_does():
    assert same_weights(TINY, ["incident-broken:float16"], ["incident-fixed:bfloat16", "exact"])
    assert not bitwise_equal(trained_weights(TINY, ["exact"]),
                             trained_weights(TrainConfig(preset="tiny", epochs=1, samples=264, classes=16, seed=1),
                                             ["exact"]))


def test_trained_weights_takes_tracker_objects_or_names():
    assert bitwise_equal(trained_weights(TINY, [ExactTracker()]), trained_weights(TINY, ["exact"]))


def test_trained_weights_restores_the_thread_count():
    threads = torch.get_num_threads()
    trained_weights(TINY, ["exact"])
    assert torch.get_num_threads() == threads


def test_toy_sgd_skips_a_poisoned_step_like_leaving_it_out():
    steps = [[(b * 4 + i, 0.25) for i in range(4)] for b in range(6)]
    poisoned = toy_sgd(steps, items=24, poisoned=9)
    assert torch.equal(poisoned, toy_sgd(steps[:2] + steps[3:], items=24))
    assert not torch.equal(poisoned, toy_sgd(steps, items=24))
    assert torch.isfinite(poisoned).all()


def test_toy_sgd_normalisation_changes_the_weights():
    per_item = [[(i, 1 / 6) for i in range(6)]]
    per_group = [[(i, 1 / (2 * 2)) for i in range(2)] + [(i, 1 / (2 * 4)) for i in range(2, 6)]]
    assert not torch.equal(toy_sgd(per_item, items=6), toy_sgd(per_group, items=6))


def test_toy_sgd_rejects_unknown_items():
    with pytest.raises(ValueError, match=r"steps name items outside 0..3"):
        toy_sgd([[(4, 1.0)]], items=4)
