import numpy as np

from benchmarks import bench_data_side as bench


def test_every_image_gets_its_own_mask():
    first, second = bench.own_mask(np.random.default_rng([0, 0])), bench.own_mask(np.random.default_rng([0, 1]))
    assert first.shape == (bench.HEIGHT, bench.WIDTH) and set(np.unique(first)) == {0, 255}
    assert not np.array_equal(first, second)  # no shared_mask flag on the benchmark's images
    assert 0.35 < (first > 0).mean() < 0.75


def test_medians_and_table_cover_every_step():
    runs = [{"data_side_cpu_ms_per_image": v, "data_side_cpu_ms_per_tile": v / 10, "main_process_cpu_ms_per_image": 1,
             "wall_ms_per_image": 2, "bare_pillow_cpu_ms_per_image": 10, "ratio": v / 10,
             "ratio_without_model_input": 1, "tiles_per_image": 10, "steps_ms": {"decode image": v, "HDF5 file": 1}}
            for v in (30.0, 10.0, 20.0)]
    result = bench.medians(runs)
    assert result["data_side_cpu_ms_per_image"] == 20.0 and result["steps_ms"]["decode image"] == 20.0
    table = bench.format_table(result)
    assert "2.00x" in table and "decode image" in table and "HDF5 file" in table


def test_mosaic_fills_the_image_without_gaps():
    from benchmarks.make_png_data import mosaic

    rng = np.random.default_rng(0)
    # pieces of different heights and widths, as lc25000 (768 px) and glas15 (775x522) crops are; none is black
    sources = [np.full((h, w, 3), 200, np.uint8) for h, w in ((768, 768), (522, 775), (300, 500))]
    for _ in range(5):
        out = mosaic(sources, bench.WIDTH, bench.HEIGHT, rng)
        assert out.shape == (bench.HEIGHT, bench.WIDTH, 3)
        assert (out > 0).all()  # a black hole between pieces read as black ink to hygiene
