"""Several jobs sharing one model cache ($BIAPY_RUNNER_CACHE): what they keep beside a package
(the validated marker, the description digest, the remembered backend) is replaced atomically,
so that concurrent writers of the same entry never leave a reader a half-written file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

from biapy_runner.io.atomic import replacing, temporary_sibling
from biapy_runner.models.store import DIGEST_NAME, MARKER_SUFFIX

WRITES = 60

#: one writer process: two threads (one process id, as two hosts may share one) each writing
#: the package's three cache entries WRITES times
_WRITER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from biapy_runner.models.backends.choice import ChoiceStore
    from biapy_runner.models.digest import ModelDigest
    from biapy_runner.models.store import mark_verified, write_digest

    package, writes = Path(sys.argv[1]), int(sys.argv[2])
    folder = package.with_suffix(".derived")

    def digest(name):
        return ModelDigest(name, "1", 1, 1, "in", "out", ("b", "c", "y", "x"),
                           ("batch", "channel", "space", "space"), ("b", "c", "y", "x"),
                           ("batch", "channel", "space", "space"), {"y": (16, 8), "x": (16, 8)},
                           {"y": (0, 1.0, 0.0), "x": (0, 1.0, 0.0)}, ("p",), True, None, None)

    def write(tag):
        for i in range(writes):
            name = f"{tag}-{i}"
            write_digest(package, folder, digest(name))
            mark_verified(package)
            ChoiceStore(folder).put("cpu", {"backend": "torch", "by": name, "pad": "x" * 4000})

    threads = [threading.Thread(target=write, args=(f"{sys.argv[3]}{t}",)) for t in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    """
)


def _package(cache: Path) -> Path:
    package = cache / "affable-shark__0123456789abcdef.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("rdf.yaml", "format_version: 0.5.4\nname: shark\n")
    return package


def test_two_processes_writing_one_cache_entry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    package = _package(cache)
    folder = package.with_suffix(".derived")
    files = {
        "digest": folder / DIGEST_NAME,
        "marker": package.with_name(package.name + MARKER_SUFFIX),
        "backends": folder / "backends.json",
    }
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(package), str(WRITES), tag],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for tag in ("A", "B")
    ]
    reads = {name: 0 for name in files}
    while any(w.poll() is None for w in writers):
        for name, path in files.items():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            data = json.loads(text)  # a half-written file would not parse
            if name == "digest":
                assert data["digest"]["name"][0] in "AB" and data["package"]["size"] > 0
            elif name == "backends":
                assert data["cpu"]["backend"] == "torch" and len(data["cpu"]["pad"]) == 4000
            reads[name] += 1
        time.sleep(0.001)
    for writer in writers:
        assert writer.returncode == 0, writer.stderr.read()
        assert writer.stderr.read() == ""  # no "cannot keep ..." warnings: no rename lost its file
    assert json.loads(files["digest"].read_text())["digest"]["name"].endswith(f"-{WRITES - 1}")
    assert json.loads(files["backends"].read_text())["cpu"]["by"].endswith(f"-{WRITES - 1}")
    leftovers = [p.name for p in (*cache.iterdir(), *folder.iterdir()) if p.name.startswith(".")]
    assert leftovers == []
    assert sum(reads.values()) > 0


def test_temporary_siblings_differ_and_failed_writes_leave_nothing(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    names = {temporary_sibling(target).name for _ in range(100)}
    assert len(names) == 100 and all(n.startswith(".model.onnx.") for n in names)
    target.write_text("old")
    try:
        with replacing(target) as partial:
            partial.write_text("half")
            raise RuntimeError("stopped")
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    with replacing(target) as partial:
        partial.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
