"""A barrier for fresh processes (`infra.fresh_process`): a folder every party can see, nothing else shared.

    barrier = FolderBarrier(folder, parties=4)     # the parent makes one and passes it to every process
    barrier.wait(member=number, timeout=900)       # each process: returns when all 4 arrived

`multiprocessing.Barrier` only works between processes of one multiprocessing family; fresh interpreters
started by `subprocess` (which is what lets `LD_PRELOAD` or a `numactl` prefix be in force) share a file
system instead. Each arrival is a file named by the round and the member; a party that fails calls
`abort()`, and every waiter then raises `BrokenBarrierError` instead of waiting out its timeout. The
waiters poll every `poll_s` seconds, so parties leave within about that much of one another.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BrokenBarrierError = threading.BrokenBarrierError


@dataclass
class FolderBarrier:
    """`parties` processes meet here, round after round; `folder` must exist and be empty at the start."""

    folder: Path
    parties: int
    poll_s: float = 0.0005
    _round: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.parties < 1:
            raise ValueError("a barrier needs at least one party")
        self.folder = Path(self.folder)

    def wait(self, member: int, timeout: float | None = None) -> None:
        """Arrive as `member` (0..parties-1) and return when every party has arrived in this round.

        Raises `BrokenBarrierError` when a party aborted, or when `timeout` seconds pass first.
        """
        if not 0 <= member < self.parties:
            raise ValueError(f"member {member} is not one of the {self.parties} parties")
        round_number, self._round = self._round, self._round + 1
        (self.folder / f"round{round_number}.member{member}").touch()
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(list(self.folder.glob(f"round{round_number}.member*"))) < self.parties:
            if self.broken():
                raise BrokenBarrierError(f"another party aborted the barrier in {self.folder}")
            if deadline is not None and time.monotonic() > deadline:
                self.abort()
                raise BrokenBarrierError(f"round {round_number}: not every party arrived within {timeout:g} s")
            time.sleep(self.poll_s)

    def abort(self) -> None:
        """Break the barrier: every party waiting now or later raises `BrokenBarrierError`."""
        (self.folder / "aborted").touch()

    def broken(self) -> bool:
        """Whether a party aborted."""
        return (self.folder / "aborted").exists()
