import pytest

from core.errors import InputError
from proposals.build import DEFAULT_MULTIBOX_WEIGHTS, ProposalsConfig, build_proposer
from proposals.selective_search import PRESETS, SelectiveSearch


def test_selective_search_methods():
    ss = build_proposer("ss")
    assert isinstance(ss, SelectiveSearch) and ss.cfg == PRESETS["ss"]
    assert build_proposer("ss2x").cfg == PRESETS["ss2x"]


@pytest.mark.parametrize("method", ["multibox", "merged"])
def test_missing_multibox_weights_name_the_file(method, tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(InputError, match="nope.pt: MultiBox weights not found"):
        build_proposer(method, ProposalsConfig(), multibox_weights=missing)


def test_default_weights_path_is_in_the_repo():
    assert DEFAULT_MULTIBOX_WEIGHTS.parts[-3:] == ("assets", "model", "multibox.pt")


def test_unknown_method():
    with pytest.raises(InputError, match="unknown proposal method"):
        build_proposer("edgeboxes")
