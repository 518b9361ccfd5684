import logging

import numpy as np
import pytest
import torch

from benchmarks.extraction.throughput import centred_cosine
from pipeline.embed.embedder import Embedder
from pipeline.embed.preprocessing import TileTransform
from pipeline.embed.runtime import cpu_has_native_bf16
from tests.conftest import TINY_SIZE

CPU = torch.device("cpu")


def _tiles(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, TINY_SIZE, TINY_SIZE, 3), dtype=torch.uint8, generator=generator)


def _reference(model, tiles: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.module(TileTransform(model.preprocessing)(tiles)).numpy()


def test_fp32_is_exactly_the_model_on_normalised_pixels(tiny_model):
    tiles = _tiles(6)
    out = Embedder(tiny_model, CPU, "fp32")(tiles)
    assert out.shape == (6, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(tiny_model, tiles), atol=1e-5)
    assert Embedder(tiny_model, CPU, "fp32")(tiles[:0]).shape == (0, 32)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "bf16-weights"])
def test_16_bit_precisions_stay_close_to_fp32(tiny_model, precision):
    tiles = _tiles(16)
    reference = Embedder(tiny_model, CPU, "fp32")(tiles)
    out = Embedder(tiny_model, CPU, precision)(tiles)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert centred_cosine(reference, out).min() > 0.99
    assert not np.array_equal(out, reference)  # it really ran in 16 bit
    # bf16-weights casts a copy: the caller's model keeps its fp32 weights
    assert all(p.dtype == torch.float32 for p in tiny_model.module.parameters())


def _recording_compile(calls: list):
    def fake_compile(module, **options):
        calls.append(options)

        def forward(tiles):
            calls.append(tuple(tiles.shape))
            return module(tiles)

        return forward

    return fake_compile


def test_compiled_batches_have_one_fixed_shape(tiny_model, monkeypatch):
    calls: list = []
    monkeypatch.setattr(torch, "compile", _recording_compile(calls))
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4, compile=True)
    assert calls[0] == {"dynamic": False, "options": {"freezing": True, "cpp.dynamic_threads": True}}
    tiles = _tiles(9)
    reference = _reference(tiny_model, tiles)
    for n in (4, 1, 9, 3):  # short batches are padded; a long one is cut into batches of 4
        np.testing.assert_allclose(embedder(tiles[:n]), reference[:n], atol=1e-5)
    shapes = {call for call in calls[1:]}
    assert shapes == {(4, TINY_SIZE, TINY_SIZE, 3)}
    assert embedder.compiled and embedder.compile_seconds >= 0


def test_padding_rows_are_zero_and_full_batches_are_not_copied(tiny_model, monkeypatch):
    monkeypatch.setattr(torch, "compile", _recording_compile([]))
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4, compile=True)
    tiles = _tiles(4)
    assert embedder.host_batch(tiles) is tiles
    padded = embedder.host_batch(tiles[:3])
    assert padded.shape == (4, TINY_SIZE, TINY_SIZE, 3)
    assert torch.equal(padded[:3], tiles[:3]) and not padded[3].any()
    eager = Embedder(tiny_model, CPU, "fp32", batch_size=4)
    part = tiles[:3]
    assert eager.host_batch(part) is part  # no fixed shape on the CPU: nothing to copy


def test_a_compiler_that_fails_falls_back_to_eager(tiny_model, monkeypatch, caplog):
    def broken_compile(module, **options):
        def forward(tiles):
            raise RuntimeError("CppCompileError: no C++ compiler\nlong log")

        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4, compile=True)
    tiles = _tiles(6)
    with caplog.at_level(logging.WARNING, logger="pipeline.embed.embedder"):
        out = embedder(tiles)
    np.testing.assert_allclose(out, _reference(tiny_model, tiles), atol=1e-5)
    assert not embedder.compiled and not embedder.fixed_shape
    assert "torch.compile failed" in caplog.text and "CppCompileError: no C++ compiler" in caplog.text
    np.testing.assert_allclose(embedder(tiles[:2]), out[:2], atol=1e-6)  # later calls run eagerly


def test_compile_unavailable_at_construction_falls_back(tiny_model, monkeypatch, caplog):
    def unsupported(module, **options):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unsupported)
    with caplog.at_level(logging.WARNING, logger="pipeline.embed.embedder"):
        embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4, compile=True)
    tiles = _tiles(3)
    np.testing.assert_allclose(embedder(tiles), _reference(tiny_model, tiles), atol=1e-5)
    assert not embedder.compiled and "not supported on this Python" in caplog.text


@pytest.mark.slow
def test_real_torch_compile_matches_eager(tiny_model):
    """The real compiler (C++ toolchain included); tens of seconds on a small CPU."""
    tiles = _tiles(5)
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4, compile=True)
    out = embedder(tiles)
    if not embedder.compiled:
        pytest.skip("torch.compile is not usable here (the fallback ran, as the warning says)")
    np.testing.assert_allclose(out, _reference(tiny_model, tiles), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU emulates bf16 (no AMX or AVX512-BF16): the fast bf16 "
                    "path is run where it is native; its policy is tested with the detection patched (test_runtime.py)")
def test_native_bf16_compiled_as_extraction_runs_it_stays_close_to_fp32(tiny_model):
    tiles = _tiles(8)
    embedder = Embedder(tiny_model, CPU, "bf16", batch_size=4, compile=True)
    out = embedder(tiles)
    if not embedder.compiled:
        pytest.skip("torch.compile is not usable here (the fallback ran, as the warning says)")
    reference = _reference(tiny_model, tiles)
    assert out.dtype == np.float32 and out.shape == reference.shape
    assert centred_cosine(reference, out).min() > 0.99


def test_extraction_with_compile_on_runs_fixed_shape_batches(make_data, tmp_path, tiny_model, monkeypatch):
    from pipeline.cache import store
    from pipeline.data.tiling import TilingSettings
    from pipeline.extract.run import run_extraction
    from pipeline.extract.settings import ExtractionSettings

    calls: list = []
    monkeypatch.setattr(torch, "compile", _recording_compile(calls))
    root = make_data(n_train=3, n_test=0)  # 12 tiles in batches of 5: 5, 5 and a padded 2
    common = dict(data_dir=root, tiling=TilingSettings(tile_size=TINY_SIZE), workers=0, batch_size=5, progress=False)
    compiled = run_extraction(ExtractionSettings(out_dir=tmp_path / "c", compile="on", **common), tiny_model)
    assert {call for call in calls[1:]} == {(5, TINY_SIZE, TINY_SIZE, 3)} and len(calls) == 4
    eager = run_extraction(ExtractionSettings(out_dir=tmp_path / "e", compile="off", **common), tiny_model)
    assert len(calls) == 4  # off means off
    for name in ("img_0000.h5", "img_0002.h5"):
        a = store.read_image_features(compiled.cache_dir / "train" / name).features
        b = store.read_image_features(eager.cache_dir / "train" / name).features
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_batches_submitted_ahead_come_back_in_order_and_exact(tiny_model):
    tiles = _tiles(10)
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4)
    first, second = embedder.submit(tiles[:4]), embedder.submit(tiles[4:8])
    third = embedder.submit(tiles[8:])
    out = np.concatenate([embedder.collect(first), embedder.collect(second), embedder.collect(third)])
    assert out.shape == (10, 32)
    np.testing.assert_allclose(out, _reference(tiny_model, tiles), atol=1e-5)


def test_staging_buffers_alternate_and_pad_a_short_batch(tiny_model):
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=4)
    embedder.fixed_shape = True  # as when compiled: every batch has batch_size rows
    tiles = _tiles(3)
    a, b = embedder.host_batch(tiles, 0), embedder.host_batch(tiles[:2], 1)
    assert a.shape == b.shape == (4, TINY_SIZE, TINY_SIZE, 3) and a.data_ptr() != b.data_ptr()
    assert torch.equal(a[:3], tiles) and not a[3:].any() and not b[2:].any()
    np.testing.assert_allclose(embedder(tiles), _reference(tiny_model, tiles), atol=1e-5)


def test_no_host_buffer_to_fill_on_a_cpu(tiny_model):
    assert Embedder(tiny_model, CPU, "fp32", batch_size=4).next_host_buffer((TINY_SIZE, TINY_SIZE, 3)) is None


def test_embed_batches_yields_one_array_per_batch_in_order(tiny_model):
    tiles = _tiles(7)
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=3)
    out = list(embedder.embed_batches([(tiles[:3], "a"), (tiles[3:6], "b"), (tiles[6:], "c")]))
    assert [tag for tag, _ in out] == ["a", "b", "c"] and [len(part) for _, part in out] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate([part for _, part in out]), _reference(tiny_model, tiles), atol=1e-5)
    assert list(embedder.embed_batches([])) == []
    assert embedder.model_seconds > 0


def test_a_failing_batch_source_still_delivers_the_batch_in_flight(tiny_model):
    tiles = _tiles(6)
    embedder = Embedder(tiny_model, CPU, "fp32", batch_size=3)

    def batches():
        yield tiles[:3], "first"
        raise KeyboardInterrupt

    delivered = []
    with pytest.raises(KeyboardInterrupt):
        for tag, part in embedder.embed_batches(batches()):
            delivered.append((tag, len(part)))
    assert delivered == [("first", 3)]
