"""Synthetic BraTS-like data: determinism, file format, label structure, MRI contrasts, splits, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from volrob.data.manifest import load_manifest, sha256_file
from volrob.data.synth import (
    assign_splits,
    case_affine,
    check_options,
    generate_case,
    split_counts,
    synthesize,
)
from volrob.data.synth import tissues as T
from volrob.data.synth.artefacts import bias_field, rician_noise
from volrob.data.synth.contrast import MODALITIES
from volrob.data.synth.noise import NoiseVolume, smooth_field, upsample_linear
from volrob.errors import ConfigError

SHAPE = (48, 48, 48)
N_CASES = 6


@pytest.fixture(scope="module")
def cases():
    return [generate_case(i, shape=SHAPE, seed=0) for i in range(N_CASES)]


@pytest.fixture(scope="module")
def big_cases():
    return [generate_case(i, shape=(96, 96, 96), seed=0) for i in range(4)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    manifest = synthesize(out, cases=4, shape=SHAPE, seed=5)
    return out, manifest


def _load(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


# --- determinism and independence ---------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_arrays():
    a, b = generate_case(3, shape=SHAPE, seed=11), generate_case(3, shape=SHAPE, seed=11)
    for m in MODALITIES:
        assert a.images[m].tobytes() == b.images[m].tobytes()
    assert a.seg.tobytes() == b.seg.tobytes()


def test_different_seed_or_index_gives_different_case():
    a = generate_case(0, shape=SHAPE, seed=1)
    for other in (generate_case(0, shape=SHAPE, seed=2), generate_case(1, shape=SHAPE, seed=1)):
        assert not np.array_equal(a.seg, other.seg)
        assert all(not np.array_equal(a.images[m], other.images[m]) for m in MODALITIES)


def test_case_is_independent_of_number_of_cases(tmp_path, dataset):
    out, manifest = dataset
    small = synthesize(tmp_path / "two", cases=2, shape=SHAPE, seed=5, val_fraction=0.0, test_fraction=0.0)
    for i in range(2):
        assert small.cases[i].sha256 == manifest.cases[i].sha256  # byte-identical files
    direct = generate_case(1, shape=SHAPE, seed=5)
    for m in MODALITIES:
        np.testing.assert_array_equal(_load(out / manifest.cases[1].images[m].path), direct.images[m])


# --- files, affine, manifest ---------------------------------------------------------------------------------


def test_files_shapes_dtypes_and_affine(dataset):
    out, manifest = dataset
    for case in manifest.cases:
        assert case.id.startswith("BraTS2021_") and len(case.id) == len("BraTS2021_00000")
        for m in MODALITIES:
            path = out / case.images[m].path
            assert path.name == f"{case.id}_{m}.nii.gz" and path.parent.name == case.id
            img = nib.load(path)
            assert img.shape == SHAPE and img.get_data_dtype() == np.float32
            np.testing.assert_allclose(img.affine, case_affine(SHAPE))
            assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
            np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))
        seg = nib.load(out / case.label)
        assert seg.get_data_dtype() == np.uint8 and seg.shape == SHAPE
        np.testing.assert_allclose(seg.affine, case_affine(SHAPE))


def test_affine_centres_the_volume():
    aff = case_affine((48, 64, 40))
    centre = aff @ np.array([47 / 2, 63 / 2, 39 / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0)
    np.testing.assert_allclose(aff[:3, :3], np.eye(3))


def test_manifest_loads_and_matches_files(dataset):
    out, written = dataset
    manifest = load_manifest(out / "manifest.json")
    assert manifest.layout == "synthetic" and manifest.label_convention == "brats2021" and manifest.root == "."
    assert tuple(manifest.modalities) == MODALITIES
    assert [c.id for c in manifest.cases] == [c.id for c in written.cases]
    train, val, test = split_counts(4, 0.2, 0.2)
    assert (len(manifest.split("train")), len(manifest.split("val")), len(manifest.split("test"))) == (train, val, test)
    for case in manifest.cases:
        for key, rel in [*((m, case.images[m].path) for m in MODALITIES), ("label", case.label)]:
            assert sha256_file(manifest.resolve(rel)) == case.sha256[key]
    params = json.loads((out / "synth_params.json").read_text())
    assert params["seed"] == 5 and params["shape"] == list(SHAPE) and set(params["case_info"]) == {
        c.id for c in manifest.cases}


# --- labels --------------------------------------------------------------------------------------------------


def test_labels_are_brats_values_and_every_case_has_a_tumour(cases):
    for c in cases:
        assert c.seg.dtype == np.uint8
        assert set(np.unique(c.seg)) <= {0, 1, 2, 4}
        assert (c.seg == 4).any() or (c.seg == 1).any()
        assert (c.seg == 2).any()
        assert not (c.seg.astype(bool) & ~c.mask).any()


def test_core_is_surrounded_by_oedema(cases):
    for c in cases:
        core = np.isin(c.seg, (1, 4))
        shell = ndi.binary_dilation(core) & ~core & c.mask & np.isin(c.tissue, (T.WM, T.GM, T.DEEP_GM))
        assert shell.any()
        assert (c.seg[shell] == 2).mean() > 0.95


def test_necrosis_lies_inside_the_enhancing_rim(big_cases):
    found = 0
    for c in big_cases:
        if not c.info["tumour"]["necrotic"]:
            continue
        found += 1
        ncr = c.seg == 1
        shell = ndi.binary_dilation(ncr) & ~ncr
        assert (c.seg[shell] == 4).all()
        assert np.linalg.norm(np.argwhere(ncr).mean(0) - np.argwhere(np.isin(c.seg, (1, 4))).mean(0)) < 3.0
    assert found >= 2


def test_tumour_size_and_position_vary(cases):
    volumes = np.array([np.isin(c.seg, (1, 2, 4)).sum() for c in cases])
    centres = np.array([np.argwhere(np.isin(c.seg, (1, 4))).mean(0) for c in cases])
    assert volumes.max() > 2 * volumes.min()
    dists = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(cases), 1)]
    assert dists.min() > 2.0
    assert {c.info["tumour"]["hemisphere"] for c in cases} == {"left", "right"}


# --- images --------------------------------------------------------------------------------------------------


def test_background_is_zero_and_brain_positive(cases):
    for c in cases:
        assert 0.1 < c.mask.mean() < 0.6
        for m in MODALITIES:
            img = c.images[m]
            assert img.dtype == np.float32 and np.isfinite(img).all()
            assert (img[~c.mask] == 0).all()
            assert (img[c.mask] > 0).all()


def test_keep_skull_adds_head_around_the_brain():
    stripped = generate_case(2, shape=SHAPE, seed=0)
    head = generate_case(2, shape=SHAPE, seed=0, skull_strip=False)
    assert (stripped.mask <= head.mask).all() and head.mask.sum() > 1.3 * stripped.mask.sum()
    np.testing.assert_array_equal(stripped.seg, head.seg)
    for m in MODALITIES:
        assert (head.images[m][~head.mask] == 0).all() and (head.images[m][head.mask] > 0).all()
        corners = head.images[m][[0, -1]][:, [0, -1]][:, :, [0, -1]]
        assert (corners == 0).all()


def _mean(c, modality, region):
    return float(c.images[modality][region].mean())


def test_tumour_contrasts(cases):
    for c in cases:
        normal = c.mask & (c.seg == 0)
        wm = normal & (c.tissue == T.WM)
        ed, et, ncr = c.seg == 2, c.seg == 4, c.seg == 1
        assert _mean(c, "flair", ed) > _mean(c, "flair", wm)
        assert _mean(c, "t2", ed) > _mean(c, "t2", wm)  # oedema spreads mostly through white matter
        if et.any():
            assert _mean(c, "t1ce", et) > 1.3 * _mean(c, "t1ce", normal)
            if c.info["tumour"]["necrotic"]:
                assert _mean(c, "t1ce", et) > _mean(c, "t1ce", ncr)


def test_normal_tissue_contrasts(big_cases):
    for c in big_cases:
        normal = c.mask & (c.seg == 0)
        # voxels whose neighbours share their tissue: partial-volume blur barely reaches them
        wm, gm, csf = (ndi.binary_erosion(normal & (c.tissue == k)) for k in (T.WM, T.GM, T.CSF))
        assert min(wm.sum(), gm.sum(), csf.sum()) > 100
        assert _mean(c, "t1", wm) > _mean(c, "t1", gm) > _mean(c, "t1", csf)
        assert _mean(c, "t2", csf) > _mean(c, "t2", gm) > _mean(c, "t2", wm)
        assert _mean(c, "flair", csf) < _mean(c, "flair", wm) < _mean(c, "flair", gm)


def test_anatomy_has_ventricles_cortex_and_deep_grey():
    c = generate_case(0, shape=(64, 64, 64), seed=3)
    normal = c.mask & (c.seg == 0)
    for code in (T.CSF, T.GM, T.WM, T.DEEP_GM):
        assert (normal & (c.tissue == code)).sum() > 200
    centre = tuple(slice(24, 40) for _ in range(3))
    assert (c.tissue[centre] == T.CSF).sum() > 50  # ventricles near the centre


# --- building blocks against independent oracles -------------------------------------------------------------


def test_smooth_field_statistics_and_correlation_length():
    rng = np.random.default_rng(0)
    for scale in (1.5, 4.0, 8.0):
        f = smooth_field(rng, (64, 64, 64), scale)
        assert f.dtype == np.float32 and abs(float(f.mean())) < 1e-4 and abs(float(f.std()) - 1) < 1e-3
        # gaussian-smoothed white noise: the derivative has std 1 / (scale * sqrt(2))
        grad = np.diff(f, axis=0).std()
        assert grad == pytest.approx(1 / (scale * np.sqrt(2)), rel=0.3)
    np.testing.assert_array_equal(smooth_field(np.random.default_rng(4), (40, 40, 40), 5.0),
                                  smooth_field(np.random.default_rng(4), (40, 40, 40), 5.0))


def test_upsample_linear_matches_map_coordinates():
    field = np.random.default_rng(1).standard_normal((7, 9, 6)).astype(np.float32)
    out = upsample_linear(field, (19, 25, 16), 3.0)
    ref = ndi.map_coordinates(field, np.indices((19, 25, 16)) / 3.0, order=1, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_noise_volume_sample_on_grid_is_the_lattice():
    vol = NoiseVolume(np.random.default_rng(2), (20, 20, 20), 1.0)
    np.testing.assert_allclose(vol.sample(np.indices((20, 20, 20)).astype(np.float32)), vol.field[:20, :20, :20],
                               atol=1e-6)


def test_bias_field_bounds():
    for amp in (0.1, 0.2):
        b = bias_field(np.random.default_rng(3), (30, 40, 20), amp)
        assert b.min() >= np.exp(-amp) - 1e-6 and b.max() <= np.exp(amp) + 1e-6
        assert max(abs(np.log(b.min())), abs(np.log(b.max()))) == pytest.approx(amp, rel=1e-4)


def test_rician_noise_matches_rice_moments():
    rng = np.random.default_rng(5)
    sigma = 10.0
    zero = rician_noise(rng, np.zeros(200_000, dtype=np.float32), sigma)
    assert zero.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.01)  # Rayleigh mean
    signal = rician_noise(rng, np.full(200_000, 100.0, dtype=np.float32), sigma)
    assert (signal**2).mean() == pytest.approx(100.0**2 + 2 * sigma**2, rel=0.01)  # E[M^2] = A^2 + 2 sigma^2


# --- splits --------------------------------------------------------------------------------------------------


def test_assign_splits_deterministic_and_seed_dependent():
    assert assign_splits(20, 3) == assign_splits(20, 3)
    assert assign_splits(20, 3) != assign_splits(20, 4)
    assert sorted(set(assign_splits(3, 0))) == ["test", "train", "val"]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.floats(0, 0.49), st.floats(0, 0.49), st.integers(0, 2**32 - 1))
def test_split_counts_properties(n, vf, tf, seed):
    train, val, test = split_counts(n, vf, tf)
    assert train + val + test == n and train >= 1 and val >= 0 and test >= 0
    if n >= 3:
        assert val >= (1 if vf > 0 else 0) and test >= (1 if tf > 0 else 0)
    names = assign_splits(n, seed, vf, tf)
    assert (names.count("train"), names.count("val"), names.count("test")) == (train, val, test)


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"cases": 0}, "cases"),
        ({"cases": 2.5}, "cases"),
        ({"cases": True}, "cases"),
        ({"seed": -1}, "seed"),
        ({"shape": (48, 48)}, "shape"),
        ({"shape": "48"}, "shape"),
        ({"shape": (48, 16, 48)}, "shape side"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": "0.2"}, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
    ],
)
def test_bad_options_raise_one_line_config_error(kwargs, word, tmp_path):
    opts = {"cases": 2, "shape": SHAPE, "seed": 0, "val_fraction": 0.2, "test_fraction": 0.2, **kwargs}
    with pytest.raises(ConfigError) as err:
        check_options(**opts)
    assert word in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        synthesize(tmp_path / "out", **opts)
    assert not (tmp_path / "out").exists()


def test_refuses_non_empty_directory_and_overwrites_only_when_asked(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(ConfigError) as err:
        synthesize(out, cases=1, shape=SHAPE)
    assert str(out) in str(err.value) and "not empty" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    manifest = synthesize(out, cases=1, shape=SHAPE, overwrite=True)
    assert keep.read_text() == "mine" and len(manifest.cases) == 1 and (out / "manifest.json").is_file()


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        synthesize(target, cases=1, shape=SHAPE, overwrite=True)


# --- rendering script ----------------------------------------------------------------------------------------


def _render_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "render_synth.py"
    spec = importlib.util.spec_from_file_location("render_synth_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_script_writes_png_and_rejects_bad_input(dataset, tmp_path, capsys):
    script = _render_script()
    out, manifest = dataset
    png = tmp_path / "view.png"
    assert script.main([str(out), "-o", str(png), "--cases", "2"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seg = np.asanyarray(nib.load(out / manifest.cases[0].label).dataobj)
    assert script.tumour_slice(seg) == round(float(np.nonzero(seg)[2].mean()))
    assert script.main([str(out), "-o", str(tmp_path / "bad.png"), "--cases", "0"]) == 2
    assert script.main([str(tmp_path / "missing"), "-o", str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("render_synth: error:") for line in err)
    assert not (tmp_path / "bad.png").exists()
