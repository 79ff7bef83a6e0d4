"""The speed benchmark's FLOP counting, table and target checks (no timing here)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import speed_report  # noqa: E402
import speed_worker  # noqa: E402


def test_count_gmac_includes_fused_attention_and_linear_layers():
    q = torch.rand(2, 4, 10, 8)
    lin = torch.nn.Linear(8, 16)

    def run():
        with torch.inference_mode():
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
            lin(q)

    attention = 2 * 4 * 10 * 10 * (8 + 8)  # q·k and p·v
    linear = 2 * 4 * 10 * 8 * 16
    assert speed_worker.count_gmac(run) * 1e9 == pytest.approx(attention + linear)


def test_count_gmac_includes_in_place_batched_gemms():
    a, b, c = torch.rand(1, 4, 1), torch.rand(1, 4, 3), torch.rand(1, 3, 5)

    def run():
        with torch.inference_mode():
            torch.baddbmm(a, b, c).baddbmm_(b, c)

    assert speed_worker.count_gmac(run) * 1e9 == pytest.approx(2 * (4 * 3 * 5))  # two GEMMs


def test_keep_recorder_forces_and_records_counts():
    rec = speed_worker.KeepRecorder(lambda aux, k: torch.arange(aux.shape[1]), forced_keep=2)
    aux = torch.zeros(1, 5, 3, 3)
    aux[0, 3] = 1.0
    aux[0, 1] = 0.5
    assert rec(aux, 16).tolist() == [1, 3]
    rec.forced_keep = None
    assert rec(aux, 16).tolist() == [0, 1, 2, 3, 4]
    assert rec.last() == [2, 5] and rec.last() is None


def _row(config, n, s, gmac, bf16=False, peak=1024.0, kept=None, compiled=False):
    return {"config": config, "classes": n, "bf16": bf16, "median_s": s, "min_s": s, "gmac": gmac,
            "peak_mib": peak, "rss_loaded_mib": 512.0, "cpu_util": 2.0, "text_s": 0.1, "kept": kept,
            "compile": compiled}


def test_targets_report_met_and_not_met_honestly():
    rows = [_row("floor", 150, 0.5, 55), _row("full", 150, 1.5, 110),
            _row("fast+topk (ctrl)", 20, 1.0, 80, kept=[16, 16, 16]),
            _row("fast+topk (ctrl)", 847, 1.6, 90, peak=5000.0, kept=[16, 16, 16])]
    lines = speed_report.targets(rows, keep=16)
    text = "\n".join(lines)
    assert "**1.60×** (target ≤ 1.5×: not met)" in text
    assert "at 150 classes / CLIP floor: **3.00×** (issue 17's target ≤ 5.5×: met)" in text
    assert "**2.00×** (110 / 55 GMAC)" in text
    assert "**4.88 GiB** (target < 4 GiB: not met)" in text
    rows += [_row("floor", 847, 0.5, 55), _row("full", 847, 4.5, 400), _row("sliding", 150, 6.2, 550),
             _row("full", 150, 1.2, None, compiled=True)]
    text = "\n".join(speed_report.targets(rows, keep=16))
    assert "at 847 classes / CLIP floor: **9.00×** (issue 17's target ≤ 8.0×: not met)" in text
    assert "one 384² view (150 classes): **4.13×** (issue 17's target ≤ 4×: not met)" in text
    assert "full FGAseg at 150 classes: **0.80×** the eager time" in text
    rows[1]["median_s"] = 3.0
    assert "**6.00×** (issue 17's target ≤ 5.5×: not met)" in "\n".join(speed_report.targets(rows, keep=16))


def test_render_and_write_keep_the_hand_written_notes(tmp_path):
    rows = [_row("floor", 20, 0.5, 55), _row("full", 20, 1.0, 88)]
    settings = {"threads": 2, "omp_wait_policy": "PASSIVE", "warmup": 1, "reps": 2, "keep": 16}
    meta = {"date": "today", "cpu": "cpu", "torch": "2", "load_before": 0.0, "load_after": 0.0,
            "cores": 2, "total_s": 60.0}
    text = speed_report.render(rows, settings, meta)
    assert "| (c) full FGAseg, plain decoder, no TopK | 20 | 1.00 | 1.00 | 1.00 | 2.00 | 88 | 88 |" in text
    out = tmp_path / "results.md"
    out.write_text("old table\n" + speed_report.NOTES_MARKER + "\nmy notes\n")
    speed_report.write_results(text, out)
    written = out.read_text()
    assert written.startswith("# Inference speed") and written.endswith("my notes\n")
    assert "old table" not in written


def test_profile_stage_timer_is_exclusive_and_attributes_flops():
    import types

    import profile_head

    timer = profile_head.StageTimer()
    lin = torch.nn.Linear(8, 16)
    ns = types.SimpleNamespace(inner=lambda x: lin(x), outer=lambda x: ns.inner(x) + lin(x))
    timer.wrap(ns, "inner", "inner")
    timer.wrap(ns, "outer", "outer")
    x = torch.rand(3, 8)
    with torch.inference_mode():
        total = profile_head.count_flops(lambda: ns.outer(x), timer)
        timer.reset()
        ns.outer(x)
    assert timer.calls == {"inner": 1, "outer": 1}
    assert timer.flops["inner"] == timer.flops["outer"] == 2 * 3 * 8 * 16  # nested one not in outer
    assert total == pytest.approx(2 * 3 * 8 * 16 / 1e9)  # GMAC: two linears of 3*8*16 MACs
    assert all(s >= 0 for s in timer.seconds.values())
