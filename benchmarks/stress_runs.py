"""Stress test of run folders: many runs at once into one runs root, killed and resumed, nothing lost.

    python benchmarks/stress_runs.py                # 8 runs, 2 of them into the same folder, 4 killed
    python benchmarks/stress_runs.py --runs 4 --kills 2 --seed 1

What it does, with the real ``distillkit`` executable:

1. Trains the reference: the same config run alone, uninterrupted, in a runs root of its own.
2. Starts ``--runs`` comparisons at once into one shared runs root (one records database, one teacher store),
   two of them into the same folder, and sends ``--kills`` of them SIGKILL, SIGTERM or SIGINT at random
   moments (while they train, write checkpoints, or start).
3. Resumes every killed run (``--resume``; a run killed before its folder existed is started again) until it
   finishes.

4. Kills one more run at each write point (``--write-points``, on by default): while it writes ``config.yaml``,
   the run marker (its record id, then "finished"), a model's weights, the teacher store's manifest, a line of
   ``metrics.jsonl``, ``results.json``, ``results.md`` and the report. The kill comes from inside the process
   (SIGKILL after half the bytes are written, injected by a ``sitecustomize`` module on the child's
   ``PYTHONPATH``: distillkit itself has no such hook), all of them at once, then each is resumed.

Then it checks, and prints: every finished run's three test accuracies and losses equal the reference's; every
record's status is right (one ``finished`` record per run folder, no ``running`` or ``interrupted`` left); the
records database passes ``PRAGMA integrity_check``; the second process on the shared folder was refused (or
waited) and never interleaved its log; no half-written file is left in any run folder or the teacher store; and no
file outside the run folders changed (a user's file in the runs
root and in the working directory stay byte for byte). It exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")
CONFIG = {
    "name": "stress", "seed": 0,
    "data": {"name": "digits", "batch_size": 64},
    "teacher": {"model": "mlp", "kwargs": {"hidden": [64]}, "train": {"epochs": 6, "lr": 0.005}},
    "student": {"model": "mlp", "kwargs": {"hidden": [8]}},
    "distill": {"alpha": 0.7, "temperature": 4.0, "beta": 0.5, "features": [{"student": "act1", "teacher": "act1"}]},
    "train": {"epochs": 12, "lr": 0.005, "checkpoint_every": 5},
}
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
WRITE_POINTS = [("config.yaml", 1), (".distillkit-run", 1), (".distillkit-run", 2), ("model.safetensors", 1),
                ("model.safetensors", 3), ("manifest.json", 1), ("metrics.jsonl", 40), ("results.json", 1),
                ("results.md", 1), ("report.html", 1)]
"""(file name, which write of it) at which a run kills itself mid-write."""

KILLER = '''"""Loaded at start-up by the stress benchmark's children: SIGKILL the process half-way through the N-th write of
one file, as a kill or a power cut would. Set by DISTILLKIT_STRESS_KILL_AT=name:N."""
import os
import signal

_point = os.environ.get("DISTILLKIT_STRESS_KILL_AT")
if _point:
    import distillkit.storage as storage
    from distillkit.training import callbacks

    _name, _nth = _point.rsplit(":", 1)
    _count = [0]

    def _half_then_die(path, data):
        _count[0] += 1
        if _count[0] < int(_nth):
            return False
        data = data.encode() if isinstance(data, str) else data
        with open(os.path.join(os.path.dirname(str(path)), "." + os.path.basename(str(path)) + ".deadbeef.tmp"),
                  "wb") as file:
            file.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    _text, _tensors, _line = storage.write_text_atomic, storage.save_tensors, callbacks.MetricsFile._write

    def write_text_atomic(path, text):
        if os.path.basename(str(path)) != _name or not _half_then_die(path, text):
            return _text(path, text)

    def save_tensors(tensors, path):
        if os.path.basename(str(path)) != _name or not _half_then_die(path, b"x" * 1000):
            return _tensors(tensors, path)

    def _write(self, trainer, record):
        if self.path.name == _name:
            _count[0] += 1
            if _count[0] >= int(_nth):
                with open(self.path, "a") as handle:
                    handle.write('{"kind": "train", "step": 1, "lo')
                os.kill(os.getpid(), signal.SIGKILL)
        return _line(self, trainer, record)

    storage.write_text_atomic, storage.save_tensors, callbacks.MetricsFile._write = write_text_atomic, save_tensors, _write
'''


def start(config: Path, out: Path, *extra: str, kill_at: str | None = None, hooks: Path | None = None
          ) -> subprocess.Popen:
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    if kill_at is not None and hooks is not None:
        env["DISTILLKIT_STRESS_KILL_AT"] = kill_at
        env["PYTHONPATH"] = os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")])
    return subprocess.Popen([EXECUTABLE, "compare", str(config), "--out", str(out), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_in_a_terminal)


def as_in_a_terminal() -> None:
    """SIGINT as a foreground command gets it (this script run in the background would pass it on ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snapshot(folder: Path, skip: set[Path]) -> dict[str, bytes]:
    """Every file under ``folder`` except those under ``skip`` (the run folders, the store, the database)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(path == s or s in path.parents for s in skip):
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def results(out: Path) -> dict[str, tuple[float, float]]:
    models = json.loads((out / "results.json").read_text())["models"]
    return {name: (m["test/accuracy"], round(m["test/loss"], 6)) for name, m in models.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--no-write-points", dest="write_points", action="store_false",
                        help="skip the kills at write points")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="distillkit-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "stress.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    started = time.perf_counter()

    reference_out = work / "reference" / "run"
    done = start(config, reference_out)
    if done.wait() != 0:
        print(done.stderr.read())
        return 1
    reference = results(reference_out)
    reference_seconds = time.perf_counter() - started
    print(f"reference run: {reference_seconds:.1f} s, distilled {100 * reference['distilled'][0]:.2f}%")

    root = work / "runs"
    root.mkdir()
    (root / "notes.txt").write_text("the user's own file in the runs root")
    (work / "cwd-file.txt").write_text("the user's own file in the working directory")
    folders = [root / f"run{k}" for k in range(args.runs - 1)] + [root / "run0"]  # the last shares run0
    procs = [start(config, out) for out in folders]
    victims = rng.sample(range(args.runs), args.kills)
    kinds = [list(SIGNALS)[i % len(SIGNALS)] for i in range(args.kills)]  # every kind of signal, in random order
    rng.shuffle(kinds)
    # the runs share two cores, so each takes several times the reference: the moments fall during training
    plan = {k: (kind, rng.uniform(0.5, 3.0) * reference_seconds) for k, kind in zip(victims, kinds)}
    t0 = time.perf_counter()
    for k, (name, delay) in sorted(plan.items(), key=lambda item: item[1][1]):
        time.sleep(max(0.0, delay - (time.perf_counter() - t0)))
        if procs[k].poll() is None:
            procs[k].send_signal(SIGNALS[name])
        else:
            plan[k] = (name + " (too late: it had finished)", delay)
    codes = [p.wait() for p in procs]
    errors = [p.stderr.read() for p in procs]
    kills = sum(1 for name, _ in plan.values() if "too late" not in name)
    for k, (name, delay) in sorted(plan.items()):
        print(f"run {k} ({folders[k].name}): {name} after {delay:.1f} s -> exit {codes[k]}")

    refused = [k for k, err in enumerate(errors) if codes[k] == 2]
    codes_before = list(codes)
    resumes = 0
    for k, out in enumerate(folders):
        if codes[k] == 0 or k in refused:
            continue
        for _ in range(3):  # a run killed again while resuming would need another try (not done here)
            resumes += 1
            again = start(config, out, "--resume")
            if again.wait() == 0:
                break
            message = again.stderr.read()
            if "nothing to resume" in message:  # killed before its folder was made: start it again
                if start(config, out).wait() == 0:
                    break
            elif "holds a finished run" in message:  # the other process on this folder finished it
                break
            else:
                print(f"resume of {out.name} failed: {message.strip()[-300:]}")
        codes[k] = 0

    write_folders, write_killed = [], 0
    if args.write_points:
        hooks = work / "hooks"
        hooks.mkdir(exist_ok=True)
        (hooks / "sitecustomize.py").write_text(KILLER)
        write_folders = [root / f"write-{name.strip('.')}-{nth}" for name, nth in WRITE_POINTS]
        # a teacher store of its own for each, so that each trains and stores its teacher (the manifest's write)
        own_store = {out: ["--set", f"cache={work / 'caches' / out.name}"] for out in write_folders}
        victims_at = [start(config, out, *own_store[out], kill_at=f"{name}:{nth}", hooks=hooks)
                      for out, (name, nth) in zip(write_folders, WRITE_POINTS)]
        for out, proc, (name, nth) in zip(write_folders, victims_at, WRITE_POINTS):
            code = proc.wait()
            write_killed += code == -signal.SIGKILL
            print(f"{out.name}: killed while writing {name} (write {nth}) -> exit {code}")
        for out in write_folders:
            resumes += 1
            again = start(config, out, "--resume", *own_store[out])
            if again.wait() != 0:
                message = again.stderr.read().strip()
                if "holds a finished run" not in message:
                    print(f"resume of {out.name} failed: {message[-300:]}")
        folders += write_folders

    mismatches = []
    for out in sorted(set(folders)):
        if not (out / "results.json").is_file():
            mismatches.append(f"{out.name}: no results")
            continue
        got = results(out)
        if got != reference:
            mismatches.append(f"{out.name}: {got} != {reference}")
        log = (out / "log.txt").read_text()
        if log.count("registered in") != 1:
            mismatches.append(f"{out.name}: {log.count('registered in')} runs registered in one log")
    with sqlite3.connect(root / "runs.db") as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute("SELECT folder, status FROM runs").fetchall()
    by_folder: dict[str, list[str]] = {}
    for folder, status in rows:
        by_folder.setdefault(Path(folder).name, []).append(status)
    for out in sorted(set(folders)):
        statuses = by_folder.get(out.name, [])
        if statuses.count("finished") != 1 or any(s in ("running", "interrupted") for s in statuses):
            mismatches.append(f"{out.name}: records {statuses}")
    if integrity != "ok":
        mismatches.append(f"runs.db: integrity_check {integrity}")
    half_written = [p for p in [*root.rglob("*.tmp"), *root.rglob("*.partial"), *(work / "caches").rglob("*.tmp")]
                    if p.name != "runs.db.lock"]
    if half_written:
        mismatches.append(f"half-written files left: {[str(p.relative_to(root)) for p in half_written][:5]}")
    outside = snapshot(root, {*set(folders), root / ".teachers", root / "runs.db", root / "runs.db-wal",
                              root / "runs.db-shm", root / "runs.db.lock"})
    if outside != {"notes.txt": b"the user's own file in the runs root"}:
        mismatches.append(f"files outside the run folders: {sorted(outside)}")
    if (work / "cwd-file.txt").read_text() != "the user's own file in the working directory":
        mismatches.append("the user's file in the working directory changed")
    shared = [codes_before[k] for k, out in enumerate(folders[:args.runs]) if out == root / "run0"]
    shared_note = ("one refused" if 2 in shared else "one waited its turn" if shared.count(0) == 2
                   else f"exits {shared}")
    print(f"runs: {args.runs} ({len(set(folders)) - len(write_folders)} folders; the 2 processes on run0: "
          f"{shared_note}), kills: {kills}, write-point kills: {write_killed} of {len(write_folders)}, "
          f"resumes: {resumes}, "
          f"records: {len(rows)}, integrity_check: {integrity}, mismatches: {len(mismatches)}, "
          f"{time.perf_counter() - started:.0f} s in all")
    for line in mismatches:
        print("MISMATCH", line)
    if args.keep is None and not mismatches:
        shutil.rmtree(work)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
