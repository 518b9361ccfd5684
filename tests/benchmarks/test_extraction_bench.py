"""Smoke tests of the extraction benchmark on tiny inputs; nothing here is timed."""

import itertools
import json
import types

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.extraction import jobs as bench_jobs
from benchmarks.extraction import runner as bench
from benchmarks.extraction import throughput
from benchmarks.extraction.report import ceiling_tiles_per_s, model_only_rate, sustained_rate
from pipeline.embed.embedder import Embedder
from pipeline.embed.loading import wrap_timm
from pipeline.embed.model import LoadedModel
from pipeline.embed.preprocessing import Preprocessing
from tests.conftest import TINY_SIZE, random_pixels, write_pair


def test_centred_cosine_ignores_the_common_direction():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 8))
    np.testing.assert_allclose(throughput.centred_cosine(a, a), 1.0)
    np.testing.assert_allclose(throughput.centred_cosine(a, a + 100.0), 1.0)  # a shared offset does not count
    np.testing.assert_allclose(throughput.centred_cosine(a, -a), -1.0)
    noisy = throughput.centred_cosine(a, a + rng.normal(scale=0.5, size=a.shape))
    assert noisy.shape == (20,) and (noisy < 1.0).all() and noisy.mean() > 0.8


def test_flops_of_a_known_model():
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    model = LoadedModel("lin", "lin", "x", module, Preprocessing(4), 5, "", "c")
    assert throughput.gflop_per_tile(model) * 1e9 == pytest.approx(2 * 48 * 5)


def test_flops_count_attention_of_hugging_face_models(tiny_model):
    # 2 layers on 5 tokens of 32 dims: QKV and output (4 x 32 x 32), MLP (2 x 32 x 64), attention (2 x 5 x 32)
    # per token, 2 FLOP per multiply-add, plus the 16 x 16 x 3 -> 32 patch projection of 4 patches
    per_layer = 5 * (4 * 32 * 32 + 2 * 32 * 64 + 2 * 5 * 32) * 2
    expected = 2 * per_layer + 4 * (16 * 16 * 3 * 32) * 2
    config = tiny_model.module.model.config
    before = config._attn_implementation
    assert throughput.gflop_per_tile(tiny_model) * 1e9 == pytest.approx(expected)
    assert config._attn_implementation == before  # the model's own attention is back


def test_memory_readings():
    assert throughput.peak_rss_mib() > 10
    assert isinstance(throughput.reset_peak_rss(), bool)
    assert throughput.children_peak_rss_mib() >= 0


def test_ceiling_uses_the_matching_matmul_rate():
    machine = {"device": "cpu", "matmul_gflops": {"fp32": 70.0, "bf16": 2400.0}}
    assert ceiling_tiles_per_s(machine, 35.0, "fp32") == pytest.approx(2.0)
    assert ceiling_tiles_per_s(machine, 35.0, "bf16-weights") == pytest.approx(2400 / 35)
    assert ceiling_tiles_per_s({**machine, "device": "cuda:0"}, 35.0, "fp16") is None


def test_ratio_compares_the_sustained_rate_with_the_mean_model_only_rate():
    row = {"model_only_tiles_per_s": 30.0, "model_only_after_tiles_per_s": 34.0, "end_to_end_tiles_per_s": 20.0,
           "end_to_end_seconds": 30.0, "end_to_end_tiles": 616, "batch_size": 16,
           "timings": {"compiling": 6.0}}  # fmt: skip
    assert model_only_rate(row) == pytest.approx(32.0)
    # the compile is the first batch's forward pass: 616 tiles in 30 s, less that batch and its 6 s
    assert sustained_rate(row) == pytest.approx(25.0)
    uncompiled = {**row, "timings": {}}
    assert sustained_rate(uncompiled) == 20.0
    only_before = {"model_only_tiles_per_s": 30.0, "end_to_end_tiles_per_s": 20.0}
    assert model_only_rate(only_before) == 30.0 and sustained_rate(only_before) == 20.0


def _tile_folder(root, n_train: int, n_test: int = 0):
    """Tile-sized images with full masks (one file is one tile, as in lc25000-lung) and labels a, b, a, ..."""
    rng = np.random.default_rng(1)
    inside = np.ones((TINY_SIZE, TINY_SIZE), dtype=bool)
    rows = ["sample_index,label"]
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            pixels = random_pixels(rng, TINY_SIZE, TINY_SIZE)
            path = write_pair(root / f"{split}_data", f"{i:04d}", pixels, inside)
            if split == "train":
                rows.append(f"{path.name},{'ab'[i % 2]}")
    (root / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tile_images(tmp_path):
    return _tile_folder(tmp_path / "tiles", 4)


def test_subset_folder_copies_the_first_images_with_their_masks(tile_images, tmp_path):
    subset = bench_jobs.subset_folder(tile_images, 2, tmp_path / "subset")
    assert sorted(p.name for p in (subset / "train_data").iterdir()) == [
        "img_0000.png", "img_0001.png", "mask_0000.png", "mask_0001.png"
    ]
    assert bench_jobs.subset_folder(tile_images, 10, tmp_path / "all") == tile_images
    with pytest.raises(ValueError, match="at least one image. Got 0 instead"):
        bench_jobs.subset_folder(tile_images, 0, tmp_path / "none")


def test_model_only_and_naive_loop_compute_the_same_features(tile_images, tiny_model):
    tiles, paths = throughput.read_tiles(tile_images, 4, TINY_SIZE)
    assert tiles.shape == (4, TINY_SIZE, TINY_SIZE, 3) and tiles.dtype == torch.uint8 and len(paths) == 4
    rate, pipeline_out = throughput.model_only(Embedder(tiny_model, torch.device("cpu"), "fp32"), tiles, 3)
    naive_rate, naive_out = throughput.naive_loop(tiny_model, paths, torch.device("cpu"))
    assert rate > 0 and naive_rate > 0 and pipeline_out.shape == naive_out.shape == (4, 32)
    # the Hugging Face image processor and the pipeline's own normalisation give the same embeddings
    np.testing.assert_allclose(naive_out, pipeline_out, atol=1e-4)


def test_model_only_times_the_median_of_enough_full_batches_after_a_warm_up(tile_images, tiny_model, monkeypatch):
    tiles, _ = throughput.read_tiles(tile_images, 4, TINY_SIZE)
    embedder = Embedder(tiny_model, torch.device("cpu"), "fp32")
    # 4 tiles in batches of 3 alternate full and short; a full batch's embeddings come 1.5 s after the short's
    sizes, clock = [], itertools.accumulate([0.0, *[1.5, 0.5] * 40])
    submit = embedder.submit
    monkeypatch.setattr(embedder, "submit", lambda batch: sizes.append(len(batch)) or submit(batch))
    monkeypatch.setattr(throughput, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))  # its clock only
    rate, embeddings = throughput.model_only(embedder, tiles, 3)
    warm_up = throughput.WARMUP_BATCHES
    assert sizes[:warm_up] == [3] * warm_up  # warm-up batches, not timed
    timed = sizes[warm_up:]
    assert timed.count(3) >= throughput.TIMED_BATCHES and embeddings.shape == (4, 32)
    assert rate == pytest.approx(3 / 1.5)  # the full batches' time, not the mean over all batches


def test_the_bare_loop_and_the_embedder_are_timed_batch_by_batch_in_turn(tile_images, tiny_model, monkeypatch):
    from pipeline.embed.embedder import Embedder

    tiles, _ = throughput.read_tiles(tile_images, 4, TINY_SIZE)
    calls = []
    embedder = Embedder(tiny_model, torch.device("cpu"), "fp32", batch_size=3)
    bare = throughput.bare_forward

    def recorded_bare(*args):
        run = bare(*args)
        return lambda: (calls.append("bare"), run())

    monkeypatch.setattr(throughput, "bare_forward", recorded_bare)
    ours = lambda batch: (calls.append("ours"), embedder(batch))[1]  # noqa: E731
    paired, alone = throughput.paired_rates(ours, tiny_model, tiles, 3, "fp32", False, torch.device("cpu"))
    assert paired > 0 and alone > 0
    assert calls == ["ours", "bare"] * (throughput.WARMUP_BATCHES + throughput.TIMED_BATCHES)


def test_naive_torchvision_path_matches_the_pipeline_for_timm_models(tmp_path):
    import timm

    torch.manual_seed(0)
    module, preprocessing, dim = wrap_timm(timm.create_model("resnet18", pretrained=False, num_classes=0).eval())
    model = LoadedModel("r18", "r18", "x", module, preprocessing, dim, "", "c")
    rng = np.random.default_rng(2)
    size = preprocessing.input_size
    inside = np.ones((size, size), dtype=bool)
    for i in range(2):
        write_pair(tmp_path / "d" / "train_data", f"{i:04d}", random_pixels(rng, size, size), inside)
    tiles, paths = throughput.read_tiles(tmp_path / "d", 2, size)
    _, naive_out = throughput.naive_loop(model, paths, torch.device("cpu"))
    _, pipeline_out = throughput.model_only(Embedder(model, torch.device("cpu"), "fp32"), tiles, 2)
    np.testing.assert_allclose(naive_out, pipeline_out, rtol=1e-3, atol=1e-3)


def test_speed_job_measures_model_only_and_end_to_end(tile_images, tiny_vit_dir, tmp_path):
    job = {"kind": "speed", "model": str(tiny_vit_dir), "precision": "auto", "device": "cpu", "images": 4,
           "data": str(tile_images), "out": str(tmp_path / "job"), "compile": "off", "end_to_end": True,
           "flops": True, "batch_size": 3, "tile_size": TINY_SIZE, "workers": 0}  # fmt: skip
    result = bench_jobs.run_job(job)
    assert result["tiles"] == 4 and result["end_to_end_tiles"] == 4 and result["images"] == 4
    assert result["model_only_tiles_per_s"] > 0 and result["end_to_end_tiles_per_s"] > 0
    assert result["model_only_after_tiles_per_s"] > 0  # timed again after the end-to-end run
    assert result["bare_tiles_per_s"] > 0 and result["paired_tiles_per_s"] > 0  # the module alone, its batches in turn
    assert result["peak_rss_mib"] > 0 and result["gflop_per_tile"] > 0 and not result["compiled"]
    assert np.load(tmp_path / "job" / "embeddings.npy").shape == (4, 32)


@pytest.mark.parametrize("native_bf16", [False, True], ids=["emulated-bf16", "native-bf16"])
def test_whole_benchmark_in_process(tiny_vit_dir, tmp_path, capsys, monkeypatch, native_bf16):
    # The CPU's bf16 support decides the precision policy; both branches run on any CPU.
    monkeypatch.setattr("pipeline.embed.runtime.cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr("benchmarks.extraction.jobs.cpu_has_native_bf16", lambda: native_bf16)
    root = _tile_folder(tmp_path / "data", n_train=8, n_test=2)
    out = tmp_path / "bench.json"
    argv = [
        "--in-process", "--data", str(root), "--models", str(tiny_vit_dir), "--precisions", "auto,bf16",
        "--images", "3", "--slow-images", "2", "--naive-tiles", "2", "--batch-size", "4", "--tile-size",
        str(TINY_SIZE), "--workers", "0", "--memory", "3,10", "--memory-model", str(tiny_vit_dir),
        "--f1-precisions", "fp32,bf16-weights", "--folds", "2", "--json", str(out), "--compile", "off",
        "--data-side-images", "0" if native_bf16 else "4",  # 0 skips the data-side measurement
    ]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    speed = {row["precision"]: row for row in report["speed"]}
    assert set(speed) == {"fp32", "bf16"}
    # the tiny ViT holds most weights in its patch convolution, so auto is fp32 for it on either CPU
    assert "auto" in speed["fp32"]["asked_as"]
    assert speed["fp32"]["centred_cosine_mean"] == pytest.approx(1.0)
    assert 0.9 < speed["bf16"]["centred_cosine_mean"] < 1.0
    # an emulated precision is timed on --slow-images only
    assert speed["fp32"]["tiles"] == 3 and speed["bf16"]["tiles"] == (3 if native_bf16 else 2)
    assert [row["images"] for row in report["memory"]] == [3, 10]
    f1 = {row["precision"]: row for row in report["f1"]}
    assert set(f1) == {"fp32", "bf16-weights"} and all(0 <= row["weighted_f1"] <= 1 for row in f1.values())
    assert f1["bf16-weights"]["drift_tiles"] == 8  # every training tile
    if native_bf16:
        assert "data_side" not in report
    else:
        assert report["data_side"]["images"] == 4 and report["data_side"]["end_to_end_tiles"] == 4
    printed = capsys.readouterr().out
    assert "model-only" in printed and "naive loop" in printed and "peak RSS 10 vs 3 images" in printed


@pytest.mark.slow
def test_a_job_runs_in_a_fresh_process(tile_images, tiny_vit_dir, tmp_path):
    job = {"kind": "naive", "model": str(tiny_vit_dir), "device": "cpu", "images": 2, "data": str(tile_images),
           "out": str(tmp_path / "naive"), "batch_size": 2, "tile_size": TINY_SIZE, "workers": 0}  # fmt: skip
    result = bench_jobs.spawn(job)
    assert result["tiles"] == 2 and result["naive_tiles_per_s"] > 0 and result["precision"] == "fp32"
    assert np.load(tmp_path / "naive" / "embeddings.npy").shape == (2, 32)
    with pytest.raises(RuntimeError, match="benchmark job .* failed"):
        bench_jobs.spawn({**job, "model": str(tmp_path / "no-such-model")})


def test_end_to_end_is_the_marginal_rate_over_the_first_images(tiny_vit_dir, tmp_path):
    root = _tile_folder(tmp_path / "data", n_train=8)
    job = {"kind": "speed", "model": str(tiny_vit_dir), "device": "cpu", "precision": "fp32", "images": 8,
           "data": str(root), "out": str(tmp_path / "speed"), "batch_size": 1, "tile_size": TINY_SIZE, "workers": 0,
           "compile": "off", "end_to_end": True, "bare": False}  # fmt: skip
    result = bench_jobs.run_job(job)
    # the first max(4 batches, a fifth) images alone, then all: start-up and warm-up cancel in the difference
    assert result["end_to_end_marginal_tiles"] == (4, 8) and result["end_to_end_marginal_tiles_per_s"] > 0
    assert sustained_rate(result) == result["end_to_end_marginal_tiles_per_s"]
    few = bench_jobs.run_job({**job, "images": 7, "out": str(tmp_path / "few")})  # under 2 x 4 batches: whole run
    assert "end_to_end_marginal_tiles_per_s" not in few and sustained_rate(few) == few["end_to_end_tiles_per_s"]
