"""Writing a run's output files safely: check the folder first, publish all files or none.

A run writes several files (results.json, results.csv, predictions, a plot). Each is written
to a hidden temporary name in the output folder and renamed into place only after all of them
were written, so a full disk or an error leaves the previous run's files untouched, never a
truncated mix. An interrupted run leaves at most hidden `.partial-*` files behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


class OutputDirError(OSError):
    """The output folder cannot be created or written to; the message says why and what to do."""


def prepare_output_dir(folder: str | Path) -> Path:
    """Create `folder` (and its parents) and check that files can be written in it.

    Call it before any long work, so a bad `--output_dir` fails at once.
    """
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError:
        raise OutputDirError(f"--output_dir {folder} is an existing file, not a folder: choose another path") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputDirError(f"cannot write to --output_dir {folder} ({reason}): choose a writable folder") from None
    return path


class OutputWriteError(OSError):
    """Writing a run's outputs failed; none of them was replaced (the message says so)."""


class StagedFiles:
    """Temporary paths for a set of files in one folder, renamed to their real names together."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tag = uuid.uuid4().hex[:8]
        self._staged: dict[Path, Path] = {}

    def path(self, name: str) -> Path:
        """Where to write the file `name` (may include sub-folders) for now: same folder and suffix, hidden name."""
        final = self.folder / name
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.parent / f".partial-{self.tag}-{final.name}"
        self._staged[final] = temporary
        return temporary

    def publish(self) -> None:
        """Rename every staged file to its real name (each rename is atomic)."""
        missing = [str(temporary) for temporary in self._staged.values() if not temporary.is_file()]
        if missing:
            self.discard()
            raise FileNotFoundError(f"staged output files were never written: {missing}")
        for final, temporary in self._staged.items():
            os.replace(temporary, final)

    def discard(self) -> None:
        """Delete the staged temporaries; the real files stay as they were."""
        for temporary in self._staged.values():
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_outputs(folder: Path) -> Iterator[StagedFiles]:
    """Stage files in `folder`; publish all of them when the block succeeds, none when it raises."""
    stage = StagedFiles(folder)
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.publish()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A hidden temporary path beside `path`, renamed to `path` when the block succeeds and deleted when it
    raises: a reader never sees half a file, and a failed write leaves the previous one as it was."""
    final = Path(path)
    with staged_outputs(final.parent) as stage:
        yield stage.path(final.name)
