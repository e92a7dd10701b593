"""atomic_folder: a folder is replaced whole or not at all, and killed writers' leftovers are found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uae.storage.atomic import atomic_folder, remove_folder_leftovers


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_block_replaces_the_whole_folder_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "encoder"
    (target / "old").mkdir(parents=True)
    (target / "old" / "weights.bin").write_text("old")
    (target / "config.json").write_text("old")
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".encoder.tmp-") and not any(tmp.iterdir())
        (tmp / "config.json").write_text("new")
        assert _tree(target) == {"config.json": "old", "old/weights.bin": "old"}  # readers see the old one meanwhile
    assert _tree(target) == {"config.json": "new"}  # no file of the old folder survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700


def test_a_failed_block_leaves_the_old_folder_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "export"
    target.mkdir()
    (target / "README.md").write_text("card")
    with pytest.raises(RuntimeError, match="crash"), atomic_folder(target) as tmp:
        (tmp / "README.md").write_text("half")
        raise RuntimeError("crash")
    assert _tree(target) == {"README.md": "card"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_new_folder_is_created_with_its_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "model"
    with atomic_folder(target) as tmp:
        (tmp / "x").write_text("1")
    assert _tree(target) == {"x": "1"}


def test_leftovers_of_killed_writers_are_removed_and_nothing_else(tmp_path: Path) -> None:
    names = [".m.tmp-123-0123abcd", ".m.old-9-deadbeef", ".m.tmp-1-short", ".other.tmp-1-0123abcd", "m", ".m.lock"]
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / ".m.old-7-00000000").write_text("a file moved aside")
    removed = remove_folder_leftovers(tmp_path, "m")
    assert sorted(p.name for p in removed) == [".m.old-7-00000000", ".m.old-9-deadbeef", ".m.tmp-123-0123abcd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", ".m.tmp-1-short", ".other.tmp-1-0123abcd", "m"]
    assert remove_folder_leftovers(tmp_path / "absent", "m") == []
