"""The Galaxy tool's glue: inputs named by element identifier, outputs gathered in input order."""

from __future__ import annotations

from pathlib import Path

import pytest

from biapy_runner.cli import main
from biapy_runner.errors import InputError
from biapy_runner.galaxy import Entry, collect, read_manifest, stage, stem_for


@pytest.mark.parametrize(
    ("identifier", "stem"),
    [
        ("dsb_nuclei.tif", "dsb_nuclei"),
        ("img1.OME.TIFF", "img1"),
        ("cells 3d (copy).tif", "cells_3d__copy_"),
        ("nuclei_classes.tabular", "nuclei_classes"),
        ("sample.v2", "sample.v2"),  # not an image extension: kept
        ("a/b", "a_b"),
        (".tif", "dataset"),
    ],
)
def test_stem_for(identifier: str, stem: str) -> None:
    assert stem_for(identifier) == stem


def _manifest(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "manifest.tsv"
    lines = []
    for identifier, name, ext in rows:
        data = tmp_path / "datasets" / name
        data.parent.mkdir(exist_ok=True)
        data.write_bytes(name.encode())
        lines.append(f"{identifier}\t{data}\t{ext}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stage_links_in_manifest_order(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [("b img.tif", "dataset_2.dat", "tiff"),
                                    ("a.tif", "dataset_1.dat", "tiff"),
                                    ("classes", "dataset_3.dat", "tabular")])  # fmt: skip
    links = stage(read_manifest(manifest), tmp_path / "images")
    assert [p.name for p in links] == ["b_img.tiff", "a.tiff", "classes.tsv"]
    assert links[0].read_bytes() == b"dataset_2.dat"


@pytest.mark.parametrize(
    ("first", "second", "stem"),
    [
        (("a b.tif", "tiff"), ("a_b.tif", "tiff"), "a_b"),  # a space made safe
        (("cells (1).tif", "tiff"), ("cells__1_", "tiff"), "cells__1_"),
        (("img.tif", "tiff"), ("img.png", "png"), "img"),  # one stem, two extensions
        (("x/y.tif", "tiff"), ("x:y.TIFF", "tiff"), "x_y"),
    ],
)
def test_stage_refuses_two_datasets_with_one_name(
    tmp_path: Path, first: tuple[str, str], second: tuple[str, str], stem: str
) -> None:
    """Two identifiers that clean to one stem would overwrite each other's outputs (and share
    one element identifier in the output collections): refused, naming both, nothing staged."""
    manifest = _manifest(tmp_path, [(first[0], "d1.dat", first[1]), ("ok.tif", "d3.dat", "tiff"),
                                    (second[0], "d2.dat", second[1])])  # fmt: skip
    with pytest.raises(InputError) as err:
        stage(read_manifest(manifest), tmp_path / "images")
    message = str(err.value)
    assert f"{first[0]!r} and {second[0]!r}" in message
    assert f"the name {stem!r}" in message
    assert not (tmp_path / "images").exists()


def test_galaxy_stage_command_exits_2_on_one_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, [("a b.tif", "d1.dat", "tiff"), ("a_b.tif", "d2.dat", "tiff")])
    assert main(["galaxy-stage", "--manifest", str(manifest), "--into", str(tmp_path / "im")]) == 2
    err = capsys.readouterr().err
    assert "ERROR: Two datasets, 'a b.tif' and 'a_b.tif', both give the name 'a_b'" in err
    assert "Traceback" not in err


def test_collect_prefixes_the_input_position(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for rel in ("post_proc/z.tif", "post_proc/a.tif", "instances/a.tif", "post_proc/z_points.tsv",
                "report/previews/a.png", "raw/z.tif"):  # fmt: skip
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(rel)
    entries = [Entry("z.tif", Path("x"), "tiff"), Entry("a.tif", Path("y"), "tiff")]
    into = tmp_path / "collect"
    gathered = collect(entries, out, into)
    assert sorted(str(p.relative_to(into)) for p in gathered) == [
        "instances/0001_a.tif", "points/0000_z.tsv", "post_proc/0000_z.tif",
        "post_proc/0001_a.tif", "previews/0001_a.png", "raw/0000_z.tif",
    ]  # fmt: skip
    assert (into / "points/0000_z.tsv").read_text() == "post_proc/z_points.tsv"
    assert not (out / "post_proc/a.tif").exists()  # moved
    assert (out / "report/previews/a.png").exists()  # copied: the report page shows it


def test_collect_gathers_the_wanted_collections_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for rel in ("post_proc/a.tif", "raw/a.tif", "instances/a.tif"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(rel)
    gathered = collect([Entry("a.tif", Path("y"), "tiff")], out, tmp_path / "c", {"post_proc"})
    assert [str(p.relative_to(tmp_path / "c")) for p in gathered] == ["post_proc/0000_a.tif"]
    assert (out / "raw/a.tif").exists()  # not wanted: left where it was


def test_collect_refuses_a_wanted_result_written_only_as_zarr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A volume predicted by chunks whose labels were too large for their TIFF: the job fails
    naming the result instead of giving Galaxy an empty collection; an unwanted Zarr-only
    output (here the raw prediction) does not matter."""
    out = tmp_path / "out"
    (out / "post_proc" / "vol.zarr").mkdir(parents=True)
    (out / "raw" / "vol.zarr").mkdir(parents=True)
    manifest = _manifest(tmp_path, [("vol.tif", "d.dat", "tiff")])
    args = ["galaxy-collect", "--manifest", str(manifest), "--out", str(out), "--into",
            str(tmp_path / "c")]  # fmt: skip
    assert main([*args, "--wanted", "metrics,config"]) == 0
    assert main([*args, "--wanted", "post_proc,metrics"]) == 2
    err = capsys.readouterr().err
    assert "post_proc/vol.zarr of 'vol.tif' was predicted by chunks" in err
    assert "Traceback" not in err


def test_galaxy_stage_command_prints_the_links(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path, [("n1.tif", "d1.dat", "tiff"), ("n0.tif", "d0.dat", "tiff")])
    assert main(["galaxy-stage", "--manifest", str(manifest), "--into", str(tmp_path / "im")]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["n1.tiff", "n0.tiff"]


def test_bad_manifest_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.tsv"
    bad.write_text("only-an-identifier\n")
    with pytest.raises(InputError, match="line 1"):
        read_manifest(bad)


def test_manifest_groups(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text("a.tif\t/x/1\ttiff\t0\nb.tif\t/x/2\ttiff\t1\nc.tif\t/x/3\ttiff\t0\n")
    assert [e.identifier for e in read_manifest(path, "0")] == ["a.tif", "c.tif"]
    assert [e.identifier for e in read_manifest(path)] == ["a.tif", "b.tif", "c.tif"]
