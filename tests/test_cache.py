import json

import numpy as np
import pytest

from multimodal_fer.errors import CorruptCacheError, StaleCacheError
from multimodal_fer.preprocessing.cache import (
    ArraySpec,
    CacheReader,
    CacheWriter,
    describe_settings_change,
    fingerprint,
    open_for_writing,
)

SPECS = [ArraySpec("x", (2, 3), "float16"), ArraySpec("y", (), "int64")]


def _write(root, indices, settings=None):
    settings = settings or {"a": 1}
    writer = CacheWriter(root, SPECS, 10, fingerprint(settings), settings)
    arrays = open_for_writing(root, ["x", "y"])
    for i in indices:
        arrays["x"][i] = i
        arrays["y"][i] = i * 10
    for array in arrays.values():
        array.flush()
    writer.mark_done(indices)
    return writer


def test_fingerprint_is_order_independent_and_sensitive():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_write_finalize_read(tmp_path):
    writer = _write(tmp_path / "c", range(10))
    manifest = writer.finalize()
    assert manifest["num_samples"] == 10
    reader = CacheReader(tmp_path / "c", expected_fingerprint=fingerprint({"a": 1}))
    np.testing.assert_array_equal(reader.array("y"), np.arange(10) * 10)
    assert reader.array("x").shape == (10, 2, 3) and reader.array("x").dtype == np.float16
    reader.verify_checksums()
    assert not (tmp_path / "c" / "done.npy").exists()


def test_interrupted_build_resumes(tmp_path):
    root = tmp_path / "c"
    _write(root, [0, 1, 2])
    with pytest.raises(CorruptCacheError, match="interrupted build"):
        CacheReader(root)
    writer = CacheWriter(root, SPECS, 10, fingerprint({"a": 1}), {"a": 1})
    np.testing.assert_array_equal(writer.pending, np.arange(3, 10))
    # The samples written before the interruption are still there.
    assert open_for_writing(root, ["y"])["y"][2] == 20


def test_build_with_other_settings_starts_over(tmp_path):
    root = tmp_path / "c"
    _write(root, [0, 1, 2])
    writer = CacheWriter(root, SPECS, 10, fingerprint({"a": 2}), {"a": 2})
    assert writer.pending.size == 10


def test_finalize_refuses_missing_samples(tmp_path):
    writer = _write(tmp_path / "c", [0, 1])
    with pytest.raises(CorruptCacheError, match="8 samples were never written"):
        writer.finalize()


def test_stale_cache_names_the_changed_setting_and_the_fix(tmp_path):
    _write(tmp_path / "c", range(10), {"image_size": 64}).finalize()
    with pytest.raises(StaleCacheError, match=r"image_size: 64 → 112.*mfer prepare"):
        CacheReader(
            tmp_path / "c",
            fingerprint({"image_size": 112}),
            {"image_size": 112},
            rebuild_hint="mfer prepare --config c.yaml --overwrite",
        )


def test_old_format_version_is_stale(tmp_path):
    _write(tmp_path / "c", range(10)).finalize()
    manifest_path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 0
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StaleCacheError, match="format version 0"):
        CacheReader(tmp_path / "c")


def test_truncated_and_modified_files_are_detected(tmp_path):
    _write(tmp_path / "c", range(10)).finalize()
    path = tmp_path / "c" / "x.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match=r"x\.npy changed since the cache was built \(its SHA-256"):
        CacheReader(tmp_path / "c")  # the file changed since its checksums last matched: opening rehashes it
    path.write_bytes(bytes(data[:-40]))
    with pytest.raises(CorruptCacheError, match="truncated"):
        CacheReader(tmp_path / "c")


def test_unknown_field_lists_fields(tmp_path):
    _write(tmp_path / "c", range(10)).finalize()
    with pytest.raises(KeyError, match="fields: \\['x', 'y'\\]"):
        CacheReader(tmp_path / "c").array("z")


def test_describe_settings_change():
    assert describe_settings_change({"a": 1, "b": 2}, {"a": 1, "b": 3}) == "b: 2 → 3"
