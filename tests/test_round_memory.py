"""A round that cannot fit in memory is refused before round 0, naming the K that fits."""

from types import SimpleNamespace

import pytest

import market_sim.scenario.round_memory as round_memory
from market_sim.cli import main
from market_sim.config.fields import ScenarioError
from market_sim.scenario import scenario_from_dict
from market_sim.scenario.round_memory import (
    available_bytes,
    check_round_memory,
    round_bytes,
)

FIXED = {"dist": "fixed", "value": 1.0}


def scenario(kind: str = "token_auction", auctions: int = 8, tokens: int = 6, candidates: int = 16):
    mechanism = {"kind": kind, "max_new_tokens": tokens}
    if kind in ("mosaic", "affine_maximizer"):
        mechanism["candidates"] = candidates
    elif kind != "token_auction":
        mechanism.update({"click_through_rates": [1.0], "reply": "cached"})
    return scenario_from_dict(
        {
            "name": "memory",
            "rounds": 2,
            "auctions_per_round": auctions,
            "model": {"path": "bundled:tiny-ads", "device": "cpu"},
            "mechanism": mechanism,
            "queries": {"items": ["vacation in Hawaii"]},
            "advertisers": [
                {"name": name, "context": f"{name}: flights.", "valuation": FIXED}
                for name in ("Alpha", "Beta", "Gamma")
            ],
        }
    )


def model(vocabulary: int = 1_000) -> SimpleNamespace:
    return SimpleNamespace(vocab_size=vocabulary, device="cpu")


def test_token_auction_rounds_hold_their_step_distributions():
    # 2 x 4 bytes x T steps x (n + 1) rows x V, per auction, per replicate
    assert round_bytes(scenario(auctions=8, tokens=6), 1_000) == 8 * 6 * 4 * 1_000 * 8
    assert round_bytes(scenario(auctions=8, tokens=6), 1_000, replicates=3) == 3 * 8 * 6 * 4 * 8000
    assert round_bytes(scenario(kind="second_price", auctions=64), 50_000) == 0


@pytest.mark.parametrize("kind", ["mosaic", "affine_maximizer"])
def test_sampled_candidate_rounds_hold_their_rewards_and_tokens(kind):
    """They counted 0 bytes: 4,096 auctions of 65,536 candidates ran until killed for memory."""
    # 8 bytes x M x (2n + 1 reward and weight rows + T token slots), n = 3 advertisers
    expected = 8 * 65_536 * (2 * 3 + 1 + 24)
    big = scenario(kind, auctions=4096, tokens=24, candidates=65_536)
    assert round_bytes(big, 1_562) == 4096 * expected
    with pytest.raises(ScenarioError) as refused:
        check_round_memory(big, model(1_562), available=24 * 10**9)
    assert refused.value.message.startswith(
        "4096 auctions with mechanism.candidates = 65,536 and max_new_tokens = 24 hold about "
        "66.6 GB per round, more than the 24.0 GB free on cpu; at most 1476 fit (or fewer "
        "seeds, fewer candidates, fewer tokens"
    )


def test_the_largest_round_that_fits_passes_and_one_more_auction_is_refused():
    per_auction = round_bytes(scenario(auctions=1), 1_000)
    available = 5 * per_auction + per_auction // 2  # room for 5 auctions, not 6
    check_round_memory(scenario(auctions=5), model(), available=available)
    with pytest.raises(ScenarioError) as refused:
        check_round_memory(scenario(auctions=6), model(), available=available)
    assert refused.value.key == "auctions_per_round"
    assert "at most 5 fit" in refused.value.message
    with pytest.raises(ScenarioError, match="at most 2 fit per replicate"):
        check_round_memory(scenario(auctions=3), model(), replicates=2, available=available)
    check_round_memory(scenario(auctions=2), model(), replicates=2, available=available)


def test_too_many_seeds_in_lockstep_are_refused_on_seeds_with_the_count_that_fits():
    """One replicate's round fits, 1000 of them do not: the remedy is fewer seeds per call."""
    per_auction = round_bytes(scenario(auctions=1), 1_000)
    available = 7 * per_auction + per_auction // 2  # room for 7 single-auction rounds
    with pytest.raises(ScenarioError) as refused:
        check_round_memory(scenario(auctions=1), model(), replicates=1000, available=available)
    assert refused.value.key == "--seeds"
    assert refused.value.message.endswith("at most 7 seeds fit in one call")
    assert refused.value.message.startswith("1000 seeds in lockstep with auctions_per_round = 1")


def test_unreadable_memory_checks_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(round_memory, "MEMINFO", tmp_path / "no-meminfo")
    monkeypatch.setattr(round_memory, "CGROUP", tmp_path / "no-cgroup")
    assert available_bytes("cpu") is None
    assert available_bytes("mps") is None
    check_round_memory(scenario(auctions=4096, tokens=512), model(10**7))  # 1.6 TB


def test_cpu_memory_is_the_smaller_of_meminfo_and_the_cgroup_headroom(monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    cgroup = tmp_path / "cgroup"
    own = cgroup / "jobs" / "this"
    own.mkdir(parents=True)
    (tmp_path / "self").write_text("0::/jobs/this\n")
    monkeypatch.setattr(round_memory, "MEMINFO", meminfo)
    monkeypatch.setattr(round_memory, "CGROUP", cgroup)
    monkeypatch.setattr(round_memory, "SELF_CGROUP", tmp_path / "self")
    assert available_bytes("cpu") == 2048 * 1024  # no cgroup files: meminfo alone
    (own / "memory.max").write_text("max\n")
    assert available_bytes("cpu") == 2048 * 1024
    (own / "memory.max").write_text("1500000\n")
    (own / "memory.current").write_text("500000\n")
    assert available_bytes("cpu") == 1_000_000
    # page cache counts in memory.current but is reclaimable
    (own / "memory.stat").write_text("anon 300000\nfile 200000\nkernel 0\n")
    assert available_bytes("cpu") == 1_200_000
    # a tighter limit on a parent cgroup wins
    (cgroup / "jobs" / "memory.max").write_text("900000\n")
    (cgroup / "jobs" / "memory.current").write_text("600000\n")
    assert available_bytes("cpu") == 300_000


def test_cuda_memory_counts_the_allocators_unused_cache(monkeypatch):
    import torch

    device = torch.device("cuda", 1)
    seen = []

    def free_and_total(where):
        seen.append(where)
        return (5_000, 80_000)

    monkeypatch.setattr(torch.cuda, "mem_get_info", free_and_total)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda where: 3_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda where: 1_000)
    assert available_bytes(device) == 7_000
    assert available_bytes("cuda:1") == 7_000
    assert seen == [device, "cuda:1"]


def test_a_round_without_room_for_one_auction_says_so():
    per_auction = round_bytes(scenario(auctions=1), 1_000)
    with pytest.raises(ScenarioError, match="not even 1 fits"):
        check_round_memory(scenario(auctions=2), model(), available=per_auction - 1)


def test_cli_refuses_with_one_line_before_writing(tmp_path, random_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(round_memory, "available_bytes", lambda device: 10**6)
    path = tmp_path / "scenario.toml"
    path.write_text(
        f'name = "memory"\nrounds = 2\nauctions_per_round = 64\n\n[model]\npath = '
        f'"{random_model_dir}"\ndevice = "cpu"\n\n[mechanism]\nkind = "token_auction"\n'
        'max_new_tokens = 4\n\n[queries]\nitems = ["vacation in Hawaii"]\n\n[[advertisers]]\n'
        'name = "Alpha"\ncontext = "Alpha: flights."\nvaluation = { dist = "fixed", value = 1.0 }\n'
    )
    out = tmp_path / "out"
    for extra in ([], ["--seeds", "0-1"]):
        assert main(["run", str(path), "--out", str(out), "--no-progress", *extra]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("market-sim: error: auctions_per_round:")
        assert "GB per round" in error and "at most" in error
        assert not out.exists()
