"""``minitx bench kernels`` as a dry run on the CPU emulator.

The GPU benchmark gets one run on borrowed hardware; a Python slip in the
harness would waste it. Here the whole harness runs on the emulator at tiny
shapes: every kernel variant is launched through the same code, every row is
written, and the error column (kernel vs float64) is checked. The timings of
a dry run mean nothing and nothing here looks at them.
"""
from __future__ import annotations

import json

import pytest

from minitx.bench import kernels as bench
from minitx.cli import main
from minitx.cuda import emulator, launch

pytestmark = pytest.mark.skipif(emulator.available() is not None, reason=str(emulator.available()))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rows = bench.run(out, device="emulator")
    return out, rows


def test_every_variant_is_benchmarked_with_a_small_error(dry_run):
    out, rows = dry_run
    # (op, version, config): rungs of one ladder share tile labels (v3_tc and v4_tc_pipelined)
    measured = {(r["op"], r["version"], r["config"]) for r in rows if not r.get("baseline")}
    for v in launch.VARIANTS:
        if v.op == "attention_delta":
            continue  # launched inside every attention_bwd measurement
        op = {"matmul_bf16": "matmul"}.get(v.op, v.op)
        assert (op, v.version, v.label) in measured, v.name_expression
    for r in rows:
        if r["err"]:
            # the tensor-core attention rounds its softmax weights to bf16 (as FlashAttention does):
            # about 2^-8 / sqrt(3) in norm against float64 on the same bf16 inputs
            tol = 1e-2 if r["op"] == "attention_tc_fwd" else 1e-5
            assert float(r["err"]) < tol, r


def test_the_report_files(dry_run):
    out, rows = dry_run
    assert rows.failures == []
    assert bench.markdown_from_jsonl(out / "kernels.jsonl") == bench.to_markdown(rows)
    lines = (out / "kernels.jsonl").read_text().splitlines()
    assert [json.loads(line)["op"] for line in lines] == [r["op"] for r in rows]
    md = (out / "kernels.md").read_text()
    assert md.startswith("**Emulator dry run (CPU)")
    assert "| op | version | dtype | shape | launch config |" in md and md.count("\n|") >= len(rows)


def test_cli_dry_run_and_bad_flags(tmp_path, capsys):
    assert main(["bench", "kernels", "--device", "emulator", "--ops", "rows", "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "kernels.md").is_file()
    assert main(["bench", "kernels", "--device", "emulator", "--ops", "bogus", "--out", str(tmp_path)]) == 2
    assert "--ops: got ['bogus']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="expected 'cuda' or 'emulator'"):
        bench.run(tmp_path, device="tpu")


def test_a_failing_section_is_reported_and_the_rest_still_runs(tmp_path, monkeypatch, capsys):
    def broken(cp, timer, rows, n_rows, C):
        raise MemoryError("out of device memory (planted)")

    monkeypatch.setattr(bench, "bench_rows", broken)
    rows = bench.run(tmp_path, ops=("rows", "matmul"), device="emulator")
    assert len(rows.failures) == 1 and "planted" in rows.failures[0]
    assert any(r["op"] == "matmul" and not r.get("baseline") for r in rows)  # measured after the failure
    assert "FAILED: MemoryError" in (tmp_path / "kernels.md").read_text()
    assert "SECTION FAILED" in capsys.readouterr().out
    monkeypatch.setattr(bench, "bench_rows", broken)
    assert main(["bench", "kernels", "--device", "emulator", "--ops", "rows", "--out", str(tmp_path)]) == 1
    assert "section failed: rows" in capsys.readouterr().err
