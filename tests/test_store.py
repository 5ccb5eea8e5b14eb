"""On-disk state: atomic writes, the root lock, removal by rename, tolerant loading."""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pluginkit import RootInUseError
from pluginkit._store import PLUGIN_ID_RE, RootLock, Store, atomic_write, check_plugin_id

ID_A = "a" * 64
ID_B = "b" * 64


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "root")
    s.open()
    return s


def _install(store: Store, plugin_id: str, record: dict[str, object] | None = None) -> None:
    staging = store.new_staging()
    (staging / "rootfs").mkdir()
    store.commit(staging, plugin_id, record if record is not None else {"Id": plugin_id})


def test_atomic_write_replaces_the_file_with_mode_0600(tmp_path: Path) -> None:
    """atomic_write leaves exactly the new content, mode 0600, and no temporary file."""
    target = tmp_path / "f.json"
    target.write_text("old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["f.json"]


def test_atomic_write_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    """A failed write raises and leaves nothing behind."""
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "f.json", b"x")
    assert os.listdir(tmp_path) == []


def test_open_creates_private_directories(store: Store) -> None:
    """The root, plugins/ and tmp/ are 0700; the lock file is 0600 and holds our pid."""
    assert _mode(store.root) == 0o700
    assert _mode(store.plugins_dir) == 0o700
    assert _mode(store.tmp_dir) == 0o700
    assert _mode(store.root / "lock") == 0o600
    assert (store.root / "lock").read_text() == f"{os.getpid()}\n"


def test_open_tightens_an_existing_root(tmp_path: Path) -> None:
    """A pre-existing root with loose permissions is made 0700."""
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    Store(root).open()
    assert _mode(root) == 0o700


def test_a_second_lock_is_refused_naming_the_holder(store: Store) -> None:
    """A second open of the same root fails with the holder's pid, even in this process."""
    with pytest.raises(RootInUseError) as info:
        Store(store.root).open()
    assert str(info.value) == f"plugin root {store.root} is in use by process {os.getpid()}"


def test_the_lock_is_free_after_close(store: Store) -> None:
    """After close() another store can take the root; close is idempotent."""
    store.close()
    store.close()
    other = Store(store.root)
    other.open()
    other.close()


def test_a_lock_without_pid_says_another_process(tmp_path: Path) -> None:
    """When the holder has not written its pid yet the message still makes sense."""
    lock = RootLock(tmp_path / "lock")
    lock.acquire(tmp_path)
    (tmp_path / "lock").write_text("")
    with pytest.raises(RootInUseError, match=r"is in use by another process$"):
        RootLock(tmp_path / "lock").acquire(tmp_path)
    lock.release()


def test_commit_makes_a_plugin_appear_whole(store: Store) -> None:
    """commit() renames the staging directory into plugins/ with a 0600 record, 0700 dir."""
    _install(store, ID_A, {"Id": ID_A, "Name": "a:latest"})
    assert [r for _, r in store.load_all()] == [{"Id": ID_A, "Name": "a:latest"}]
    assert _mode(store.plugin_dir(ID_A)) == 0o700
    assert _mode(store.plugin_dir(ID_A) / "plugin.json") == 0o600
    assert os.listdir(store.tmp_dir) == []


def test_save_replaces_the_record(store: Store) -> None:
    """save() rewrites plugin.json atomically."""
    _install(store, ID_A)
    store.save(ID_A, {"Id": ID_A, "Enabled": True})
    assert store.load_all() == [(ID_A, {"Id": ID_A, "Enabled": True})]


def test_remove_leaves_nothing(store: Store) -> None:
    """remove() deletes the plugin and leaves no -removing directory."""
    _install(store, ID_A)
    store.remove(ID_A)
    assert os.listdir(store.plugins_dir) == []


def test_remove_tolerates_a_stale_removing_dir(store: Store) -> None:
    """A leftover <id>-removing from an earlier attempt is deleted too."""
    _install(store, ID_A)
    (store.plugins_dir / f"{ID_A}-removing" / "x").mkdir(parents=True)
    store.remove(ID_A)
    assert os.listdir(store.plugins_dir) == []


def test_remove_of_a_missing_plugin_is_not_an_error(store: Store) -> None:
    """Removing what is not there does nothing."""
    store.remove(ID_A)
    assert os.listdir(store.plugins_dir) == []


def test_open_finishes_interrupted_removals_from_any_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """<id>-removing dirs are deleted at start, joined with the root (Docker used cwd)."""
    root = tmp_path / "root"
    first = Store(root)
    first.open()
    _install(first, ID_A)
    os.rename(first.plugin_dir(ID_A), first.plugins_dir / f"{ID_A}-removing")
    (first.tmp_dir / "stage-x").mkdir()
    first.close()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / f"{ID_A}-removing").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    second = Store(root)
    second.open()
    assert os.listdir(second.plugins_dir) == []
    assert os.listdir(second.tmp_dir) == []
    assert os.listdir(elsewhere) == [f"{ID_A}-removing"]


def test_load_all_skips_unreadable_entries(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """Bad JSON, a non-object and a missing record are logged and skipped (moby#33799)."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    _install(store, ID_A)
    _install(store, ID_B)
    (store.plugin_dir(ID_B) / "plugin.json").write_text("{")
    c = "c" * 64
    _install(store, c)
    (store.plugin_dir(c) / "plugin.json").write_text("[]")
    d = "d" * 64
    store.plugin_dir(d).mkdir()
    (store.plugins_dir / "not-an-id").mkdir()
    assert store.load_all() == [(ID_A, {"Id": ID_A})]
    messages = sorted(r.getMessage().split(",")[0] for r in caplog.records)
    assert messages == [
        f"error loading plugin record {store.plugin_dir(ID_B)}/plugin.json",
        f"error loading plugin record {store.plugin_dir(c)}/plugin.json",
        f"missing plugin record {store.plugin_dir(d)}/plugin.json",
    ]


def test_load_all_skips_a_deeply_nested_record(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A record nested deeper than json can decode is logged and skipped, not raised."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    _install(store, ID_A)
    _install(store, ID_B)
    (store.plugin_dir(ID_B) / "plugin.json").write_text("[" * 100_000 + "]" * 100_000)
    assert store.load_all() == [(ID_A, {"Id": ID_A})]
    assert [r.getMessage() for r in caplog.records] == [
        f"error loading plugin record {store.plugin_dir(ID_B)}/plugin.json, skipping: "
        "JSON nested too deeply"
    ]


def test_load_all_skips_records_that_are_not_small_regular_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record replaced by a FIFO, a link to /dev/zero or a huge file is skipped at once."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    store = Store(tmp_path / "root", max_record_bytes=100)
    store.open()
    for plugin_id in (ID_A, ID_B, "c" * 64, "d" * 64):
        _install(store, plugin_id)
    os.unlink(store.plugin_dir(ID_B) / "plugin.json")
    os.mkfifo(store.plugin_dir(ID_B) / "plugin.json")  # open() would wait for a writer
    os.unlink(store.plugin_dir("c" * 64) / "plugin.json")
    os.symlink("/dev/zero", store.plugin_dir("c" * 64) / "plugin.json")  # a read never ends
    (store.plugin_dir("d" * 64) / "plugin.json").write_text(json.dumps({"Id": "d" * 101}))
    assert store.load_all() == [(ID_A, {"Id": ID_A})]
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"error loading plugin record {store.plugin_dir(ID_B)}/plugin.json, skipping: "
        "not a regular file but a FIFO",
        f"error loading plugin record {store.plugin_dir('c' * 64)}/plugin.json, skipping: "
        "not a regular file but a character device",
        f"error loading plugin record {store.plugin_dir('d' * 64)}/plugin.json, skipping: "
        "larger than the limit of 100 bytes",
    ]


def test_records_are_json_objects(store: Store) -> None:
    """The record on disk is plain JSON with a trailing newline."""
    _install(store, ID_A, {"Id": ID_A, "Name": "x:latest"})
    text = (store.plugin_dir(ID_A) / "plugin.json").read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == {"Id": ID_A, "Name": "x:latest"}


@given(st.text())
def test_ids_never_escape_the_root(text: str) -> None:
    """Only 64 lower-case hex digits are accepted as ids; nothing else becomes a path."""
    store = Store(Path("/nonexistent/root"))
    if PLUGIN_ID_RE.match(text):
        assert store.plugin_dir(text).parent == store.plugins_dir
    else:
        with pytest.raises(ValueError, match="invalid plugin id"):
            store.plugin_dir(text)


@pytest.mark.parametrize(
    "bad", ["../" + "a" * 61, "/" + "a" * 63, "A" * 64, "a" * 63, "a" * 65, "a" * 63 + "\n"]
)
def test_check_plugin_id_rejects(bad: str) -> None:
    """Traversal, absolute paths, upper case, wrong lengths and trailing newlines are refused."""
    with pytest.raises(ValueError, match="must be 64 lower-case hex digits"):
        check_plugin_id(bad)


def test_save_stages_its_temporary_file_in_tmp(store: Store) -> None:
    """A record's temporary file is made under tmp/ (cleared at start), never in the plugin dir."""
    _install(store, ID_A)
    made: list[str] = []
    real_mkstemp = tempfile.mkstemp

    def spy(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
        made.append(name)
        return fd, name

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "mkstemp", spy)
        store.save(ID_A, {"Id": ID_A})
    assert [Path(n).parent for n in made] == [store.tmp_dir]
    assert sorted(os.listdir(store.plugin_dir(ID_A))) == ["plugin.json", "rootfs"]
