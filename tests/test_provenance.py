"""Provenance in summary.json: versions, model identity and weight hashes, scenario hash, git."""

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import tomli_w
import torch

from market_sim.provenance import git_state, model_provenance, version_line
from market_sim.results import SUMMARY_FIELDS
from market_sim.run import run_scenario
from market_sim.scenario import load_scenario
from market_sim.sweep import run_sweep


def write_scenario(folder: Path, model_dir: Path) -> Path:
    data = {
        "name": "provenance",
        "seed": 1,
        "rounds": 2,
        "model": {"path": str(model_dir), "device": "cpu"},
        "mechanism": {"kind": "token_auction", "max_new_tokens": 4},
        "queries": {"items": ["vacation in Hawaii"]},
        "advertisers": [
            {
                "name": "Alpha",
                "context": "Alpha Airlines: flights.",
                "valuation": {"dist": "fixed", "value": 1.0},
            },
            {
                "name": "Beta",
                "context": "Beta Resort: rooms.",
                "valuation": {"dist": "fixed", "value": 0.5},
            },
        ],
    }
    path = folder / "provenance.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_summary_records_versions_model_hashes_and_scenario(tmp_path, random_model_dir, random_lm):
    scenario = load_scenario(write_scenario(tmp_path, random_model_dir))
    out = tmp_path / "run"
    run_scenario(scenario, out_dir=out, lm=random_lm)
    summary = json.loads((out / "summary.json").read_text())
    versions = summary["versions"]
    assert versions["python"] == platform.python_version()
    expected = ("torch", "transformers", "tokenizers", "safetensors", "mesa", "polars", "numpy")
    for name in (*expected, "scipy", "trl", "accelerate"):
        assert versions[name] == metadata.version(name), name
    assert versions["market_sim"] == metadata.version("market-sim")

    def sha256(name: str) -> str:  # hashed here, independently
        return hashlib.sha256((random_model_dir / name).read_bytes()).hexdigest()

    settings = sorted(p.name for p in random_model_dir.iterdir() if p.suffix in (".json", ".txt"))
    assert "config.json" in settings and "tokenizer.json" in settings
    model = summary["provenance"]["model"]
    assert model == {
        "reference": str(random_model_dir),
        "source": "local",
        "hub_id": None,
        "revision": None,
        "weights_sha256": {"model.safetensors": sha256("model.safetensors")},
        "settings_sha256": {name: sha256(name) for name in settings},
    }
    scenario_text = (out / "scenario.toml").read_bytes()
    assert summary["provenance"]["scenario_sha256"] == hashlib.sha256(scenario_text).hexdigest()
    assert summary["provenance"]["dtype"] == "float32"
    assert summary["provenance"]["prompt_format"] == "plain"  # the random model has no template
    # the random model's tokenizer, config and generation config name one end-of-sequence token
    assert summary["provenance"]["stop_token_ids"] == [random_lm.tokenizer.eos_token_id]
    assert summary["provenance"]["prompt_bos_id"] is None  # its tokenizer puts none before text
    # every key is a declared summary field or a string-valued key of the mechanism (a plugin's
    # key named like a field is refused when it registers, so the two never clash)
    choices = {"aggregation", "payment", "settlement"}  # the token auction's variant
    assert set(summary) == SUMMARY_FIELDS | choices
    assert summary["report_scale_meaning"] == "sharpen"
    execution = summary["execution"]
    assert execution["model_folder"] == str(random_model_dir.resolve())
    assert execution["device"] == "cpu" and execution["torch_threads"] == torch.get_num_threads()
    assert set(execution) == {
        "model_folder",
        "device",
        "machine",
        "cpu_capability",
        "cuda_version",
        "device_name",
        "torch_threads",
        "git_commit",
        "git_dirty",
        "git_diff_sha256",
        "lockstep_seeds",
    }
    assert execution["machine"] == platform.machine() and execution["device_name"] is None
    assert execution["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert execution["lockstep_seeds"] == [summary["seed"]]  # a run alone


def test_hub_reference_is_told_apart_without_network(monkeypatch):
    # a hub model that resolved (as it has once loaded) but whose snapshot is not in the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        "market_sim.lm.loading.resolve_model_reference", lambda reference, *a, **k: "org/model"
    )
    loaded = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(_commit_hash="abc123")))
    record, folder = model_provenance("hub:org/model", loaded)
    assert record == {
        "reference": "hub:org/model",
        "source": "hub",
        "hub_id": "org/model",
        "revision": "abc123",
        "weights_sha256": {},
        "settings_sha256": {},
    }
    assert folder is None


def test_bundled_reference_records_its_folder():
    record, folder = model_provenance("bundled:tiny-ads")
    assert record["source"] == "bundled" and Path(folder).name == "tiny-ads"
    assert list(record["weights_sha256"]) == ["model.safetensors"]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_git_state_of_a_checkout_outside_one_and_without_git(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "file.txt").write_text("one\n")
    git(repo, "add", "file.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"git_commit": commit, "git_dirty": False, "git_diff_sha256": None}
    (repo / "file.txt").write_text("two\n")
    diff = subprocess.run(
        ["git", "-C", str(repo), "diff", "HEAD", "--binary"], capture_output=True, check=True
    ).stdout  # hashed here, from the bytes git prints
    dirty = git_state(repo)
    assert dirty["git_dirty"] is True
    assert dirty["git_diff_sha256"] == hashlib.sha256(diff).hexdigest()
    (repo / "file.txt").write_text("three\n")
    assert git_state(repo)["git_diff_sha256"] != dirty["git_diff_sha256"]
    nulls = {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}
    assert git_state(tmp_path) == nulls  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # git absent: no failure, nulls
    assert git_state(repo) == nulls


def test_version_flag_and_python_dash_m():
    done = subprocess.run(
        [sys.executable, "-m", "market_sim", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == version_line()
    assert done.stdout.startswith(f"market-sim {metadata.version('market-sim')}")


def test_sweep_keeps_machine_dependent_keys_out_of_runs_table(tmp_path, random_model_dir):
    scenario = write_scenario(tmp_path, random_model_dir)
    result = run_sweep(scenario, [], "0", tmp_path / "sweep", progress=False)
    runs = result.runs
    assert "provenance.scenario_sha256" in runs.columns and "versions.mesa" in runs.columns
    assert not [column for column in runs.columns if column.startswith("execution.")]
    timings = pl.read_parquet(tmp_path / "sweep" / "timings.parquet")
    assert timings["execution.model_folder"].to_list() == [str(random_model_dir.resolve())]


def test_sweep_reruns_a_run_whose_model_files_changed_in_place(tmp_path, random_model_dir, capsys):
    """Same reference, edited config.json: the complete run is stale and runs again."""
    model_dir = tmp_path / "model"
    shutil.copytree(random_model_dir, model_dir)
    scenario = write_scenario(tmp_path, model_dir)
    out = tmp_path / "sweep"
    first = run_sweep(scenario, [], "0", out, progress=False).runs
    again = run_sweep(scenario, [], "0", out, progress=False).runs  # unchanged: reused
    assert "running it again" not in capsys.readouterr().err
    assert again.equals(first)
    config = json.loads((model_dir / "config.json").read_text())
    config["layer_norm_epsilon"] = 0.5  # changes every forward, not the weights
    (model_dir / "config.json").write_text(json.dumps(config))
    changed = run_sweep(scenario, [], "0", out, progress=False).runs
    assert "was made with other model files (config.json); running it again" in (
        capsys.readouterr().err
    )
    assert changed["revenue_mean"][0] != first["revenue_mean"][0]
    column = "provenance.model.settings_sha256.config.json"
    assert changed[column][0] != first[column][0]


def test_a_refused_sweep_leaves_its_stale_runs_complete(tmp_path, random_model_dir):
    """Weights damaged after the sweep: its run is stale, but the model check refuses the
    rerun; the run used to lose its summary.json before that check."""
    model_dir = tmp_path / "model"
    shutil.copytree(random_model_dir, model_dir)
    scenario = write_scenario(tmp_path, model_dir)
    out = tmp_path / "sweep"
    run_sweep(scenario, [], "0", out, progress=False)
    (summary_path,) = (out / "runs").glob("*/summary.json")
    before = summary_path.read_bytes()
    (weights,) = model_dir.glob("*.safetensors")
    weights.write_bytes(b"not a safetensors file")  # hashes fine; its header does not parse
    with pytest.raises(ValueError, match="safetensors"):
        run_sweep(scenario, [], "0", out, progress=False)
    assert summary_path.read_bytes() == before


def test_sweep_reruns_a_run_made_with_another_thread_count(tmp_path, random_model_dir, capsys):
    """A sweep resumed with another --threads used to table runs of both counts."""
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "sweep"
    first = run_sweep(scenario, [], "0", out, progress=False).runs
    (summary_path,) = (out / "runs").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["execution"]["torch_threads"] == 1
    summary["execution"]["torch_threads"] = 2  # as if an earlier call ran with --threads 2
    summary_path.write_text(json.dumps(summary))
    again = run_sweep(scenario, [], "0", out, progress=False).runs
    assert "was made with 2 torch threads (this sweep: --threads 1); running it again" in (
        capsys.readouterr().err
    )
    assert json.loads(summary_path.read_text())["execution"]["torch_threads"] == 1
    assert again.equals(first)  # the rerun at one thread writes the first run's numbers


def test_changed_model_files_compares_the_tables_a_record_has():
    from market_sim.provenance import changed_model_files

    now = {"weights_sha256": {"w": "1"}, "settings_sha256": {"config.json": "2"}}
    assert changed_model_files({**now}, now) == []
    assert changed_model_files({"weights_sha256": {"w": "1"}}, now) == []  # older record
    assert changed_model_files({"weights_sha256": {"w": "0"}}, now) == ["w"]
    edited = {"weights_sha256": {"w": "1"}, "settings_sha256": {"tokenizer.json": "3"}}
    assert changed_model_files(edited, now) == ["config.json", "tokenizer.json"]
    assert changed_model_files(None, now) == ["<no record>"]  # unreadable summary: rerun
    assert changed_model_files(None, None) == []  # an uncached hub model: nothing to compare


def test_sweep_model_cache_reloads_only_when_the_files_changed(monkeypatch):
    import market_sim.lm.model as model_module
    import market_sim.provenance as provenance
    from market_sim.sweep import backends

    hashes = {"now": None}
    loads = []
    monkeypatch.setattr(provenance, "current_model_hashes", lambda path: hashes["now"])
    monkeypatch.setattr(
        model_module.LanguageModel, "load", staticmethod(lambda *a, **k: loads.append(a) or a)
    )
    monkeypatch.setattr(backends, "_MODELS", {})
    key = ("hub:org/model", "cpu", "auto")
    backends.cached_model(key)  # not in the local cache yet: no hashes
    hashes["now"] = {"weights_sha256": {"w": "1"}, "settings_sha256": {}}
    backends.cached_model(key)  # fetched by that first load: the same model, not reloaded
    assert len(loads) == 1
    hashes["now"] = {"weights_sha256": {"w": "2"}, "settings_sha256": {}}
    backends.cached_model(key)  # the files changed: loaded again
    backends.cached_model(key)
    assert len(loads) == 2


def test_hub_revision_comes_from_the_snapshot_folder_when_the_config_has_none(
    monkeypatch, tmp_path
):
    """Found by an audit: transformers 5 drops config._commit_hash, so every hub model was
    recorded with revision null although its cache snapshot is named by the commit."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--model"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(
        "market_sim.lm.loading.resolve_model_reference", lambda reference, *a, **k: "org/model"
    )
    loaded = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace()))
    record, folder = model_provenance("hub:org/model", loaded)
    assert record["revision"] == commit and folder == str(snapshot)
    assert list(record["weights_sha256"]) == ["model.safetensors"]


def test_weight_hashes_cover_the_top_level_weights_only(tmp_path):
    from market_sim.provenance import weight_hashes

    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"first shard")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"second shard")
    checkpoint = tmp_path / "checkpoint-500"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"a trainer's checkpoint, never loaded")
    assert weight_hashes(tmp_path) == {
        "model-00001-of-00002.safetensors": hashlib.sha256(b"first shard").hexdigest(),
        "model-00002-of-00002.safetensors": hashlib.sha256(b"second shard").hexdigest(),
    }
