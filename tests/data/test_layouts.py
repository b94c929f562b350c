"""Scanning dataset folders into manifests: three layouts, seeded splits, round trips, clear errors."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from volrob.data.labels import CONVENTIONS
from volrob.data.layouts import SCANNABLE, assign_splits, build_manifest
from volrob.data.manifest import FORMAT, LAYOUTS, MODALITIES, SPLITS, VERSION, load_manifest, manifest_from_json
from volrob.errors import ConfigError, DataError


def test_brats2021(brats2021_root: Path) -> None:
    m = build_manifest(brats2021_root, "brats2021", val_fraction=0.34, seed=0)
    assert [c.id for c in m.cases] == ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003", "BraTS2021_00005"]
    assert m.layout == "brats2021" and m.label_convention == "brats2021"
    assert m.modalities == MODALITIES
    assert m.name == "BraTS2021_Training_Data"
    assert Path(m.root) == brats2021_root.resolve()
    c0 = m.cases[0]
    assert {k: r.path for k, r in c0.images.items()} == {
        mod: f"BraTS2021_00000/BraTS2021_00000_{mod}.nii.gz" for mod in MODALITIES}
    assert all(r.channel is None for r in c0.images.values())
    assert c0.label == "BraTS2021_00000/BraTS2021_00000_seg.nii.gz"
    unlabelled = m.cases[3]
    assert unlabelled.label is None and unlabelled.split == "unlabelled"
    assert sorted(c.split for c in m.cases[:3]) == ["train", "train", "val"]  # round(0.34 * 3) = 1 val case
    for c in m.cases:
        for ref in c.images.values():
            assert m.resolve(ref.path).is_file()


def test_brats2023_maps_suffixes_and_tolerates_other_cohorts(brats2023_root: Path) -> None:
    m = build_manifest(brats2023_root, "brats2023", val_fraction=0.0)
    assert [c.id for c in m.cases] == ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000", "BraTS-MEN-00004-000"]
    assert m.label_convention == "brats2023"
    men = m.cases[2]
    expected = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
    assert {k: r.path for k, r in men.images.items()} == {
        mod: f"BraTS-MEN-00004-000/BraTS-MEN-00004-000-{sfx}.nii.gz" for mod, sfx in expected.items()}
    assert men.label == "BraTS-MEN-00004-000/BraTS-MEN-00004-000-seg.nii.gz"
    assert {c.split for c in m.cases} == {"train"}


def test_msd_channels_from_dataset_json(msd_root: Path) -> None:
    m = build_manifest(msd_root, "msd", val_fraction=0.0, test_fraction=0.0)
    assert [c.id for c in m.cases] == ["BRATS_001", "BRATS_002", "BRATS_003", "BRATS_485"]  # "._" files ignored
    assert m.label_convention == "msd" and m.layout == "msd"
    c = m.cases[0]
    assert {k: (r.path, r.channel) for k, r in c.images.items()} == {
        "flair": ("imagesTr/BRATS_001.nii.gz", 0), "t1": ("imagesTr/BRATS_001.nii.gz", 1),
        "t1ce": ("imagesTr/BRATS_001.nii.gz", 2), "t2": ("imagesTr/BRATS_001.nii.gz", 3)}
    assert c.label == "labelsTr/BRATS_001.nii.gz"
    test_case = m.cases[3]
    assert test_case.images["t1"].path == "imagesTs/BRATS_485.nii.gz"
    assert test_case.label is None and test_case.split == "unlabelled"


def test_msd_other_channel_order(msd_root: Path) -> None:
    meta_path = msd_root / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["modality"] = {"0": "T2w", "1": "t1gd", "2": "FLAIR", "3": "T1w"}
    meta_path.write_text(json.dumps(meta))
    c = build_manifest(msd_root, "msd").cases[0]
    assert {k: r.channel for k, r in c.images.items()} == {"t2": 0, "t1ce": 1, "flair": 2, "t1": 3}


def test_same_seed_same_manifest_and_seeds_differ(brats2021_root: Path) -> None:
    a = build_manifest(brats2021_root, "brats2021", val_fraction=0.5, seed=3)
    b = build_manifest(brats2021_root, "brats2021", val_fraction=0.5, seed=3)
    assert a.to_json() == b.to_json()
    splits = {tuple(c.split for c in build_manifest(brats2021_root, "brats2021", val_fraction=0.5, seed=s).cases)
              for s in range(12)}
    assert len(splits) > 1


@given(
    n=st.integers(0, 60),
    val=st.floats(0.0, 1.0),
    test=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_assign_splits_partitions_with_rounded_counts(n: int, val: float, test: float, seed: int) -> None:
    if val + test > 1.0:
        val, test = val / 2, test / 2
    ids = [f"case{i:03d}" for i in range(n)]
    splits = assign_splits(list(reversed(ids)), val_fraction=val, test_fraction=test, seed=seed)
    assert sorted(splits) == ids
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts["test"] == int(test * n + 0.5)
    assert counts["val"] == min(int(val * n + 0.5), n - counts["test"])
    assert sum(counts.values()) == n
    assert splits == assign_splits(ids, val_fraction=val, test_fraction=test, seed=seed)  # input order irrelevant


def test_round_trip_with_relative_root(brats2021_root: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "manifests"
    m = build_manifest(brats2021_root, "brats2021", hash_files=True, test_fraction=0.34, manifest_dir=out_dir,
                       name="tiny")
    assert m.root == "../BraTS2021_Training_Data"
    m.save(out_dir / "tiny.json")
    back = load_manifest(out_dir / "tiny.json")
    assert back.to_json() == m.to_json()
    assert back.root_dir == brats2021_root.resolve()
    assert back.resolve(back.cases[0].images["t1"].path).is_file()


@pytest.mark.parametrize("layout", SCANNABLE)
def test_round_trip_every_layout(layout: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(f"{layout}_root")
    m = build_manifest(root, layout, hash_files=True, seed=7)
    path = m.save(tmp_path / "out" / "m.json")
    back = load_manifest(path)
    assert back.to_json() == m.to_json()
    assert back.digest() == m.digest()


def test_hashes_are_file_sha256(msd_root: Path) -> None:
    m = build_manifest(msd_root, "msd", hash_files=True)
    c = m.cases[0]
    image_hash = hashlib.sha256((msd_root / "imagesTr" / "BRATS_001.nii.gz").read_bytes()).hexdigest()
    label_hash = hashlib.sha256((msd_root / "labelsTr" / "BRATS_001.nii.gz").read_bytes()).hexdigest()
    assert c.sha256 == {"t1": image_hash, "t1ce": image_hash, "t2": image_hash, "flair": image_hash,
                        "label": label_hash}
    assert "label" not in m.cases[3].sha256
    assert build_manifest(msd_root, "msd").cases[0].sha256 == {}


def test_missing_modality_names_folder_and_modality(brats2021_root: Path) -> None:
    folder = brats2021_root / "BraTS2021_00002"
    (folder / "BraTS2021_00002_t1ce.nii.gz").unlink()
    with pytest.raises(DataError, match="missing modality 't1ce'") as err:
        build_manifest(brats2021_root, "brats2021")
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_missing_modality_brats2023(brats2023_root: Path) -> None:
    (brats2023_root / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t2f.nii.gz").unlink()
    with pytest.raises(DataError, match=r"missing modality 'flair' \(expected BraTS-GLI-00000-000-t2f.nii.gz\)"):
        build_manifest(brats2023_root, "brats2023")


def test_uncompressed_nifti_accepted(brats2021_root: Path) -> None:
    folder = brats2021_root / "BraTS2021_00000"
    gz = folder / "BraTS2021_00000_t2.nii.gz"
    (folder / "BraTS2021_00000_t2.nii").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    m = build_manifest(brats2021_root, "brats2021")
    assert m.cases[0].images["t2"].path == "BraTS2021_00000/BraTS2021_00000_t2.nii"


@pytest.mark.parametrize("layout", SCANNABLE)
def test_empty_folder(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    if layout == "msd":
        (root / "dataset.json").write_text(json.dumps({"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd",
                                                                    "3": "T2w"}}))
    with pytest.raises(DataError, match=f"no {layout} cases found; expected") as err:
        build_manifest(root, layout)
    assert str(root) in str(err.value)


def test_wrong_layout_finds_nothing(brats2021_root: Path) -> None:
    with pytest.raises(DataError, match="no brats2023 cases found"):
        build_manifest(brats2021_root, "brats2023")


def test_root_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset root is not a folder") as err:
        build_manifest(tmp_path / "nowhere", "brats2021")
    assert "nowhere" in str(err.value)


def test_msd_dataset_json_problems(msd_root: Path) -> None:
    meta_path = msd_root / "dataset.json"
    meta = json.loads(meta_path.read_text())
    bad_cases = [
        ({**meta, "modality": {"0": "FLAIR", "1": "T1w", "2": "CT", "3": "T2w"}}, "'CT' is not one of"),
        ({**meta, "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd"}}, "lacks t2"),
        ({**meta, "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T1"}}, "'t1' is listed twice"),
        ({k: v for k, v in meta.items() if k != "modality"}, "needs a \"modality\" object"),
    ]
    for content, message in bad_cases:
        meta_path.write_text(json.dumps(content))
        with pytest.raises(DataError, match=message) as err:
            build_manifest(msd_root, "msd")
        assert str(meta_path) in str(err.value)
    meta_path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        build_manifest(msd_root, "msd")
    meta_path.unlink()
    with pytest.raises(DataError, match="needs dataset.json"):
        build_manifest(msd_root, "msd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "synthetic"}, "layout must be one of"),
        ({"layout": "brats2021", "val_fraction": 1.5}, "val_fraction must be in"),
        ({"layout": "brats2021", "test_fraction": -0.1}, "test_fraction must be in"),
        ({"layout": "brats2021", "val_fraction": 0.6, "test_fraction": 0.6}, "must be <= 1"),
        ({"layout": "brats2021", "seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_parameters(brats2021_root: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_manifest(brats2021_root, **kwargs)


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
EXAMPLES = ("example_brats2021.json", "example_brats2023.json", "example_msd.json")


def _schema() -> dict:
    return json.loads((EXAMPLES_DIR / "manifest.schema.json").read_text())


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_parse_in_canonical_form(name: str) -> None:
    raw = json.loads((EXAMPLES_DIR / name).read_text())
    m = manifest_from_json(raw, EXAMPLES_DIR / name)
    assert m.to_json() == raw
    assert len(m.cases) == 2 and not Path(m.root).is_absolute()
    assert m.layout == m.label_convention == name.removeprefix("example_").removesuffix(".json")


def test_schema_agrees_with_the_parser() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props, case_props = schema["properties"], schema["$defs"]["case"]["properties"]
    assert props["layout"]["enum"] == list(LAYOUTS)
    assert props["label_convention"]["enum"] == case_props["label_convention"]["enum"] == sorted(CONVENTIONS)
    assert case_props["split"]["enum"] == list(SPLITS)
    assert props["modalities"]["default"] == list(MODALITIES)
    assert props["format"]["const"] == FORMAT and props["version"]["const"] == VERSION
    for raw in (json.loads((EXAMPLES_DIR / n).read_text()) for n in EXAMPLES):
        assert set(raw) <= set(props)
        for case in raw["cases"]:
            assert set(case) <= set(case_props)
    for key in (*props.values(), *case_props.values()):
        assert key.get("description") or "const" in key


@pytest.mark.parametrize("layout", SCANNABLE)
def test_examples_and_built_manifests_validate(layout: str, request: pytest.FixtureRequest) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(_schema())
    validator.check_schema(_schema())
    validator.validate(json.loads((EXAMPLES_DIR / f"example_{layout}.json").read_text()))
    built = build_manifest(request.getfixturevalue(f"{layout}_root"), layout, hash_files=True)
    validator.validate(built.to_json())
    bad = built.to_json()
    bad["cases"][0]["split"] = "holdout"
    assert not validator.is_valid(bad)
