"""What ``import decjax`` loads: not the heavy modules only a few functions use."""

from benchmarks.import_time import LEFT_FOR_LATER, loaded_by_decjax


def test_import_decjax_leaves_the_heavy_modules_for_later():
    assert {"scipy", "networkx", "tqdm", "flax"} <= set(LEFT_FOR_LATER)
    assert loaded_by_decjax() == []
