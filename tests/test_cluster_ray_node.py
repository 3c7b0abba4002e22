"""A Ray node's view of one job's worker processes, over a fake ``/proc`` tree."""

from __future__ import annotations

import os
from pathlib import Path

from carbon_magic.cluster.ray_node import NIL_JOB, JobWorkers, environment_job

TICKS = os.sysconf("SC_CLK_TCK")
RAYLET = 100


class FakeProc:
    """``/proc/<pid>/{stat,environ,task/<pid>/children}`` for a raylet and its workers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[int] = []
        self.process(RAYLET, None, 0.0)

    def process(self, pid: int, job: str | None, cpu_s: float) -> None:
        base = self.root / str(pid)
        (base / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
        (base / "task" / str(pid) / "children").write_text("")
        environ = b"PATH=/bin\0" + (f"RAY_JOB_ID={job}\0".encode() if job else b"")
        (base / "environ").write_bytes(environ)
        self.cpu(pid, cpu_s)
        if pid != RAYLET:
            self.children.append(pid)
            self._write_children()

    def cpu(self, pid: int, cpu_s: float) -> None:
        ticks = int(cpu_s * TICKS)
        fields = ["S", "1", *["0"] * 9, str(ticks), "0", "0", "0", *["0"] * 6, "10"]
        (self.root / str(pid) / "stat").write_text(f"{pid} (ray::IDLE) {' '.join(fields)}\n")

    def exit(self, pid: int) -> None:
        for path in sorted((self.root / str(pid)).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (self.root / str(pid)).rmdir()
        self.children.remove(pid)
        self._write_children()

    def _write_children(self) -> None:
        text = " ".join(str(pid) for pid in self.children)
        (self.root / str(RAYLET) / "task" / str(RAYLET) / "children").write_text(text)


def test_a_jobs_workers_are_counted_once_and_keep_their_time_after_exiting(tmp_path):
    proc = FakeProc(tmp_path)
    proc.process(201, "01000000", 2.0)  # this job's worker
    proc.process(202, "02000000", 5.0)  # another driver's worker
    proc.process(203, None, 1.0)  # an agent of the raylet: no job at all
    proc.process(204, "01000000", 1.0)  # the tracker actor itself: never charged
    alone = [True]
    workers = JobWorkers("01000000", RAYLET, {204}, lambda: alone[0], str(tmp_path))
    assert environment_job(202, str(tmp_path)) == "02000000"
    assert workers.cpu_s() == 2.0
    assert workers.pids() == {201}
    proc.cpu(201, 3.0)
    proc.process(205, NIL_JOB, 0.5)  # pre-started before any job: the only reader's
    workers.refresh_children()
    assert workers.cpu_s() == 3.5
    proc.exit(201)  # its last reading stays counted
    workers.refresh_children()
    assert workers.cpu_s() == 3.5
    alone[0] = False  # another driver reads this node too: unassigned workers are no one's
    workers = JobWorkers("01000000", RAYLET, {204}, lambda: alone[0], str(tmp_path))
    assert workers.cpu_s() == 0.0 and workers.pids() == set()
