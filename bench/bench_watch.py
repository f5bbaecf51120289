"""Soak: `sheetsync watch` against the Sheets API stand-in while a simulated team edits.

A small synthetic dataset (drawn Roman numerals) is pushed to the stand-in; ``--people``
collaborator threads, each through its own real gspread client, edit a random row every
``60 / --edits-per-minute`` seconds on average (label, split, note; now and then an invalid
label that they fix a little later), and now and then one of them sorts the whole table. The
watcher runs in this process (real training with ``--epochs``, default 1) for ``--minutes``,
then drains (cycles until idle, no more edits).

Checked at the end (any failure exits 1): every cell people wrote last is still in the sheet on
its id's row; every valid final edit is in the latest version; every score row's version exists
and trained on it; the watcher's own requests per minute (max over any 60-s window, from its
own request counters) stay under 60 reads and 60 writes.

Baseline, in the same process and on the same team script: the naive service a cron job gives
(``pull`` then ``push --force`` every interval), counted for lost edits and requests.

With ``--faults``: bursts of 429, 503 and timeouts from the stand-in (every ~15 s on average),
a crash (a ``kill -9`` stand-in raised at the journal's rename step) in about one move batch in
five, after which the watcher is restarted on a freshly opened project (recovery finishes the
batch), and a person copying a new image into the folders about once a minute. Also checked
then: no image file lost or duplicated (the multiset of file contents under the root), and
every image has its row in the sheet at the end.

Usage::

    python -m bench.bench_watch --minutes 30 --faults
    python -m bench.bench_watch --minutes 3 --edits-per-minute 6 --baseline-minutes 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gspread

from sheetsync.errors import SheetsyncError
from sheetsync.project import Project
from sheetsync.sheets.base import INFO_PREFIX
from sheetsync.sheets.google import GoogleBackend
from sheetsync.watch import Event, Watcher, WatchSettings
from tests._google_project import init_google_project, open_google_project
from tests._sheets_standin import SheetsStandin, standin_client, token_credentials
from tests.conftest import write_images

CLASSES = ["i", "ii", "iii"]


@dataclass
class Team:
    """The simulated people: what they wrote last per (id, column), and when."""

    api: SheetsStandin
    sid: str
    people: int
    per_minute: float
    seed: int = 0
    last: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    edits: int = 0
    sorts: int = 0
    invalid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def sheet(self, who: str) -> Any:
        client = standin_client(self.api, token_credentials(self.api, who))
        return client.open_by_key(self.sid).worksheet("data")

    def person(self, k: int) -> None:
        """One teammate: edits a random row's label, split or note now and then (a few label
        typos, fixed 20 s later), and once in a while sorts the whole table."""
        rng = random.Random(self.seed * 100 + k)
        ws = self.sheet(f"person{k}@example.com")
        fix: list[tuple[str, float]] = []
        while not self.stop.wait(rng.expovariate(self.per_minute / 60 / self.people)):
            try:
                self._act(k, rng, ws, fix)
            except gspread.exceptions.APIError:
                continue  # an API fault (--faults) hit this person: the edit did not land

    def _act(self, k: int, rng: random.Random, ws: Any, fix: list[tuple[str, float]]) -> None:
        with self.lock:  # one person's find-then-type never straddles another's sort
            top, header, rows = table_of(ws)
            if rng.random() < 0.05:
                self.api.sort_rows(self.sid, "data", header.index(rng.choice(
                    ["path", "label", "id"])), descending=rng.random() < 0.5)
                self.sorts += 1
                return
            idc = header.index("id")
            if fix and fix[0][1] < time.time():
                id_ = fix.pop(0)[0]
                column, value = "label", rng.choice(CLASSES)
            else:
                id_ = rng.choice(rows)[idc]
                column = rng.choice(["label", "label", "split", "note"])
                value = {"label": rng.choice(CLASSES), "split": rng.choice(["train", "val"]),
                         "note": f"seen by {k} #{self.edits}"}[column]
                if column == "label" and rng.random() < 0.1:
                    value = "typo" + value  # fixed by the same person 20 s later
                    fix.append((id_, time.time() + 20))
                    self.invalid += 1
            r = next(i for i, row in enumerate(rows, start=top + 1) if row[idc] == id_)
            ws.update_cell(r, header.index(column) + 1, value)
            self.last[(id_, column)] = (value, time.time())
            self.edits += 1

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.person, args=(k,), daemon=True)
                   for k in range(self.people)]
        for t in threads:
            t.start()
        return threads


def table_of(ws: Any) -> tuple[int, list[str], list[list[str]]]:
    """(sheet row of the header, header, data rows), below sheetsync's info line."""
    values = ws.get_all_values()
    at = next(i for i, row in enumerate(values) if row and not row[0].startswith(INFO_PREFIX))
    return at + 1, values[at], values[at + 1:]


def make_project(api: SheetsStandin, work: Path, images: int) -> Project:
    per = max(1, images // 6)
    write_images(work / "data", {"train": {c: per for c in CLASSES},
                                 "val": {c: max(1, per // 2) for c in CLASSES}})
    proj = init_google_project(api, work / "data", work / "proj", title="soak",
                               people=[f"person{k}@example.com" for k in range(20)])
    project = open_google(api, proj)
    project.push()
    return project


open_google = open_google_project


class Meter:
    """The watcher's own requests per 60-s window, sampled every second."""

    def __init__(self, backend: GoogleBackend):
        self.backend, self.samples = backend, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            u = self.backend.stats
            self.samples.append((time.monotonic(), u.reads, u.writes))

    def peak(self) -> tuple[int, int]:
        best = (0, 0)
        for i, (t0, r0, w0) in enumerate(self.samples):
            for t1, r1, w1 in self.samples[i:]:
                if t1 - t0 > 60:
                    break
                best = (max(best[0], r1 - r0), max(best[1], w1 - w0))
        return best


class Crash(BaseException):
    """A kill -9 stand-in, raised from the journal's rename step; nothing inside catches it."""


@dataclass
class Faults:
    """``--faults``: API bursts, crashes mid-move, new image files (see the module docstring)."""

    api: SheetsStandin
    root: Path
    stop: threading.Event
    crash_rate: float = 0.2
    seed: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.files = Counter(_digest(p) for p in self.root.rglob("*") if p.is_file())

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def run(self) -> None:
        from sheetsync.demo import draw_numeral

        while not self.stop.wait(self.rng.expovariate(1 / 15)):
            kind = self.rng.choice(["429", "503", "timeout", "image"])
            if kind == "image" and self.rng.random() < 0.25:
                cls = self.rng.choice(CLASSES)
                path = self.root / "train" / cls / f"copied-{self.rng.randrange(10**9)}.png"
                draw_numeral(cls, self.rng).save(path)
                self.files[_digest(path)] += 1
                self.count("new_images")
            elif kind != "image":
                fault: int | str = int(kind) if kind.isdigit() else kind
                self.api.fail_next(self.rng.randint(1, 3), fault, delay=2.0)
                self.count(f"api_{kind}")

    def install(self) -> Any:
        """Crash about ``crash_rate`` of the move batches at a rename; returns the undo."""
        from sheetsync import journal as jr

        real = jr._rename

        def rename(root: Path, src: str, dst: str) -> None:
            # A batch of a few moves makes a few renames each: about crash_rate of them die.
            if self.rng.random() < self.crash_rate / 4:
                self.count("crashes")
                raise Crash()
            real(root, src, dst)

        jr._rename = rename
        return lambda: setattr(jr, "_rename", real)

    def lost_or_duplicated(self) -> int:
        now = Counter(_digest(p) for p in self.root.rglob("*") if p.is_file())
        return sum(((+now) - (+self.files)).values()) + sum(((+self.files) - (+now)).values())


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with SheetsStandin() as api:
        project = make_project(api, work, args.images)
        team = Team(api, project.backend.spreadsheet_id, args.people, args.edits_per_minute)
        events: list[Event] = []
        settings = WatchSettings(interval=args.interval, quiet=args.quiet, epochs=args.epochs)
        watcher = Watcher(project, settings, events.append)
        meter = Meter(project.backend)
        meter.thread.start()
        faults = Faults(api, project.config.root, team.stop) if args.faults else None
        undo = faults.install() if faults else None
        threads = team.start()
        if faults:
            threads.append(threading.Thread(target=faults.run, daemon=True))
            threads[-1].start()
        timer = threading.Timer(args.minutes * 60, lambda: (team.stop.set(),))
        timer.start()
        started = time.time()
        cycles = 0
        while True:  # the watcher's loop, made observable; after the team stops: until idle
            try:
                action = watcher.cycle()
            except SheetsyncError as e:
                action = "error"
                events.append(Event("", "error", {"error": type(e).__name__, "detail": str(e),
                                                  "delay": args.interval}))
            except Crash:  # the process died mid-move: a new one starts on the same project
                action = "crash"
                project = open_google(api, project.config.project_dir)
                watcher = Watcher(project, settings, events.append)
            cycles += 1
            if team.stop.is_set() and action == "idle":
                break
            time.sleep(args.interval)
        for t in threads:
            t.join()
        if undo:
            undo()
        meter.stop.set()
        elapsed = time.time() - started
        result = _check(project, team, events, cycles, elapsed, meter.peak())
        if faults:
            shown = set(project.backend.read_table()["id"].astype(str))
            result.update(faults=faults.counts, files_lost_or_duplicated=faults.lost_or_duplicated(),
                          images_without_row=len(set(project.versions.load("latest")["id"]) - shown))
        return result


def _check(project: Project, team: Team, events: list[Event], cycles: int, elapsed: float,
           peak: tuple[int, int]) -> dict[str, Any]:
    sheet = project.backend.read_table().set_index("id")
    latest = project.versions.load("latest").set_index("id")
    lost = [k for k, (v, _) in team.last.items() if sheet.at[k[0], k[1]] != v]
    # A row whose last label is a typo is held back whole (by design): its cells wait too.
    held = {k[0] for k, (v, _) in team.last.items() if k[1] == "label" and v not in CLASSES}
    valid = {k: v for k, v in team.last.items() if k[0] not in held}
    unapplied = [k for k, (v, _) in valid.items() if str(latest.at[k[0], k[1]]) != v]
    scores = project.scores.read()
    versions = {v.version: v for v in project.versions.list()}
    bad_scores = [r for r in scores["version"].astype(int) if r not in versions]
    latency = _latencies(project, valid, scores)
    stats = project.backend.stats
    return {
        "minutes": round(elapsed / 60, 1), "cycles": cycles, "edits": team.edits,
        "invalid_typed": team.invalid, "sorts": team.sorts,
        "versions": len(versions), "score_rows": len(scores),
        "lost_human_cells": len(lost), "rows_held_at_end": len(held),
        "valid_edits_not_applied": len(unapplied),
        "score_rows_without_version": len(bad_scores),
        "reads_per_min_peak": peak[0], "writes_per_min_peak": peak[1],
        "requests_total": stats.requests, "retries": stats.retries,
        "repairs": sum(int(e.data.get("repairs", 0)) for e in events),
        "errors": sum(e.event == "error" for e in events),
        "latency_s": latency,
    }


def _latencies(project: Project, valid: dict[tuple[str, str], tuple[str, float]],
               scores: Any) -> dict[str, float]:
    """Seconds from a final edit's last keystroke to the score row of the version holding it."""
    from datetime import datetime

    def ts(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    versions = sorted(project.versions.list(), key=lambda v: v.version)
    manifests = {v.version: project.versions.load(f"v{v.version}").set_index("id") for v in versions}
    score_time = {int(v): ts(t) for v, t in zip(scores["version"], scores["time"], strict=True)}
    out = []
    for (id_, column), (value, typed) in valid.items():
        for v in versions:
            if ts(v.time) >= typed - 1 and str(manifests[v.version].at[id_, column]) == value:
                if v.version in score_time:
                    out.append(score_time[v.version] - typed)
                break
    if not out:
        return {}
    out.sort()
    return {"n": len(out), "median": round(out[len(out) // 2], 1),
            "p90": round(out[int(len(out) * 0.9)], 1), "max": round(out[-1], 1)}


def baseline(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The naive loop: pull (all or nothing), then push --force, every interval."""
    with SheetsStandin() as api:
        project = make_project(api, work, args.images)
        team = Team(api, project.backend.spreadsheet_id, args.people, args.edits_per_minute)
        threads = team.start()
        end = time.time() + args.baseline_minutes * 60
        while time.time() < end:
            try:
                project = open_google(api, project.config.project_dir)
                project.pull()
                project.push(force=True)
            except SheetsyncError:
                pass
            time.sleep(args.interval)
        team.stop.set()
        for t in threads:
            t.join()
        sheet = project.backend.read_table().set_index("id")
        lost = [k for k, (v, _) in team.last.items() if sheet.at[k[0], k[1]] != v]
        return {"minutes": args.baseline_minutes, "edits": team.edits,
                "lost_human_cells": len(lost)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--baseline-minutes", type=float, default=2.0)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--edits-per-minute", type=float, default=4.0, help="for the whole team")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--quiet", type=float, default=15.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--faults", action="store_true",
                        help="API bursts, crashes mid-move and new image files during the soak")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"machine load (1/5/15 min) before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args, Path(tmp) / "soak")
        print("watch:", json.dumps(result))
        base = baseline(args, Path(tmp) / "baseline") if args.baseline_minutes > 0 else None
        if base:
            print("baseline (pull + push --force every interval):", json.dumps(base))
    load = os.getloadavg()
    print(f"machine load after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if base and base["edits"]:
        print(f"human cells lost per edit: watch {result['lost_human_cells'] / max(1, result['edits']):.3f}"
              f" vs baseline {base['lost_human_cells'] / base['edits']:.3f}")
    ok = (result["lost_human_cells"] == 0 and result["valid_edits_not_applied"] == 0
          and result.get("files_lost_or_duplicated", 0) == 0
          and result.get("images_without_row", 0) == 0
          and result["score_rows_without_version"] == 0 and result["reads_per_min_peak"] < 60
          and result["writes_per_min_peak"] < 60)
    print("verdict:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
