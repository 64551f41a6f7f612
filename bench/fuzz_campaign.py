"""A fuzz campaign of mutated .tflite models through the real CLI (issue 12's acceptance).

Each model (structurally mutated through the flatbuffer schema, or byte-flipped and
truncated: the mutators of ``tests/test_fuzz.py``, with other seeds and more of them)
goes through ``edgeq inspect --json``, ``edgeq emit`` and ``edgeq build --target cortex-m``
(every other build with evaluation data, so LiteRT runs too), each a fresh
``.venv/bin/python -m edgeq`` process with its own private ``$TMPDIR``. Measured per run:
exit code, "Traceback" in stderr, death by signal, wall time (killed at 60 s: a hang),
peak RSS of the process tree (``wait4``'s rusage covers reaped children), the peak
bytes in ``$TMPDIR`` (sampled every 20 ms) and what is left there; for inspect, that
stdout is strict JSON (no NaN/Infinity).

Acceptance: exit 0 or 2 only, 0 tracebacks, 0 signals, 0 hangs, peak RSS < 2 GB,
< 100 MB in ``$TMPDIR``, nothing left behind, for every input (all are < 1 MB).

    .venv/bin/python bench/fuzz_campaign.py [--structural 1000] [--bytewise 150] [--jobs 2] [--stack 2] [--seed N] [--out DIR]

Writes ``results.jsonl`` (one line per run) and ``summary.json`` under ``--out``; exits 1
when any run misses the acceptance.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_fuzz import bytewise, seed_models, structural  # noqa: E402

WALL_LIMIT = 60.0
RSS_LIMIT = 2 << 30
TMP_LIMIT = 100 << 20
TIME = "/usr/bin/time"  # GNU time
CAMPAIGN_SEED = 20251202  # not the test's seeds: a fresh corpus


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _group_alive(pgid: int, grace: float = 0.5) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, after up to ``grace`` s to exit."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    alive.append(int(entry))
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def run_one(args: list[str], work: Path) -> dict[str, Any]:
    """One CLI run with a private TMPDIR: exit, signal, wall, peak RSS, TMPDIR peak/leftovers."""
    tmp = work / "tmp"
    tmp.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(tmp), "OPENBLAS_NUM_THREADS": "1"}
    out, err = (work / "stdout").open("wb"), (work / "stderr").open("wb")
    start = time.monotonic()
    # /usr/bin/time reports the edgeq tree's peak RSS: this process's own (it built the seeds
    # with TensorFlow) would count in a child's maxrss, which starts from the forking process.
    proc = subprocess.Popen([TIME, "-f", "%x %M", "-o", str(work / "time"), sys.executable, "-m", "edgeq", *args],
                            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    peak_tmp, status, usage, hang = 0, 0, None, False
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tmp
        while not stop.wait(0.02):
            peak_tmp = max(peak_tmp, _tree_bytes(tmp))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > WALL_LIMIT:
            hang = True
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    timed = (work / "time").read_text().splitlines() if (work / "time").exists() else []
    rss, code = 0, proc.returncode
    if timed and not hang:
        exit_text, rss_kb = timed[-1].split()
        rss = int(rss_kb) * 1024
        died = [ln for ln in timed if ln.startswith("Command terminated by signal")]
        code = -int(died[0].split()[-1]) if died else int(exit_text)
    stop.set()
    sampler.join()
    orphans = _group_alive(proc.pid)  # a worker left behind is a finding too
    if orphans:
        os.killpg(proc.pid, signal.SIGKILL)
    out.close()
    err.close()
    peak_tmp = max(peak_tmp, _tree_bytes(tmp))
    stderr = (work / "stderr").read_text("utf-8", "replace")
    stdout = (work / "stdout").read_text("utf-8", "replace")
    json_ok = None
    if args[0] == "inspect" and code == 0:
        try:
            json.loads(stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            json_ok = True
        except ValueError:
            json_ok = False
    return {
        "args": args[0], "code": code, "signal": code < 0 and not hang, "hang": hang,
        "traceback": "Traceback" in stderr or "Traceback" in stdout, "wall": round(wall, 3),
        "rss": rss or (usage.ru_maxrss * 1024 if usage else 0), "tmp_peak": peak_tmp,
        "leftovers": sorted(p.name for p in tmp.iterdir()), "orphans": orphans, "json_ok": json_ok,
        "error": next((ln[7:][:200] for ln in stderr.splitlines() if ln.startswith("error: ")), ""),
    }


def failures_of(r: dict[str, Any]) -> list[str]:
    bad = []
    if r["code"] not in (0, 2):
        bad.append(f"exit {r['code']}")
    for key in ("traceback", "signal", "hang", "orphans"):
        if r[key]:
            bad.append(key)
    if r["rss"] >= RSS_LIMIT:
        bad.append(f"rss {r['rss']:,}")
    if r["tmp_peak"] >= TMP_LIMIT:
        bad.append(f"tmp {r['tmp_peak']:,}")
    if r["leftovers"]:
        bad.append(f"left {r['leftovers']}")
    if r["json_ok"] is False:
        bad.append("not JSON")
    return bad


def campaign(out: Path, structural_count: int, bytewise_count: int, jobs: int, *, stack: int = 2,
             mobilenet: bool = True, seed: int = CAMPAIGN_SEED) -> dict[str, Any]:
    seeds_dir = out / "seeds"
    seeds_dir.mkdir(parents=True, exist_ok=True)
    seeds = seed_models(seeds_dir)
    if mobilenet:  # more op kinds (depthwise convolutions, average pooling), 300 KB
        import numpy as np

        from tests.codegen_models import mobilenet_025

        ev = seeds_dir / "mobilenet_eval.npz"
        np.savez(ev, x=np.random.default_rng(2).random((4, 96, 96, 3), dtype=np.float32), y=np.arange(4) % 10)
        seeds["mobilenet"] = (mobilenet_025(), ev)
    corpus = out / "corpus"
    corpus.mkdir(exist_ok=True)
    rng = random.Random(seed)
    names = sorted(seeds)
    cases = []
    for i in range(structural_count + bytewise_count):
        seed_name = names[i % len(names)]
        original = seeds[seed_name][0].read_bytes()
        data, what = structural(original, rng, stack=stack) if i < structural_count else bytewise(original, rng)
        path = corpus / f"{'s' if i < structural_count else 'b'}{i:05d}-{seed_name}.tflite"
        path.write_bytes(data)
        assert len(data) < 1 << 20
        cases.append((path, what, seeds[seed_name][1], i))
    results_path = out / "results.jsonl"
    lock = threading.Lock()
    counts: dict[str, int] = {}

    def run_case(case: tuple[Path, str, Path, int]) -> list[dict[str, Any]]:
        path, what, ev, i = case
        work = Path(tempfile.mkdtemp(prefix=f"{path.stem}-", dir=out / "runs"))
        runs = [["inspect", "--json", str(path)], ["emit", str(path), "-o", str(work / "emit")],
                ["build", str(path), "--target", "cortex-m", "-o", str(work / "build"),
                 *(["-e", str(ev)] if i % 2 else [])]]
        rows = []
        for k, args in enumerate(runs):
            r = run_one(args, work / f"run{k}")
            r.update(case=path.name, what=what, failures=failures_of(r))
            rows.append(r)
        with lock:
            with results_path.open("a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
                    key = f"{r['args']}:{r['code']}"
                    counts[key] = counts.get(key, 0) + 1
        shutil.rmtree(work, ignore_errors=True)
        return rows

    (out / "runs").mkdir(exist_ok=True)
    results_path.write_text("")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(jobs) as pool:
        for n, got in enumerate(pool.map(run_case, cases), 1):
            rows.extend(got)
            if n % 50 == 0:
                print(f"{n}/{len(cases)} models, {time.monotonic() - started:.0f} s, {counts}", flush=True)
    summary = summarize(rows, models=len(cases), structural=structural_count, bytewise=bytewise_count,
                        seconds=round(time.monotonic() - started, 1), seed=seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarize(rows: list[dict[str, Any]], **about: Any) -> dict[str, Any]:
    """The acceptance figures over all runs (``about``: what the corpus was)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['args']}:{r['code']}"] = counts.get(f"{r['args']}:{r['code']}", 0) + 1
    failed = [r for r in rows if r["failures"]]
    return {
        **about, "runs": len(rows), "exit_codes": dict(sorted(counts.items())),
        "tracebacks": sum(r["traceback"] for r in rows), "signals": sum(r["signal"] for r in rows),
        "hangs": sum(r["hang"] for r in rows), "max_rss": max(r["rss"] for r in rows),
        "max_tmp_peak": max(r["tmp_peak"] for r in rows), "max_wall": max(r["wall"] for r in rows),
        "leftovers": sum(bool(r["leftovers"]) for r in rows), "orphans": sum(bool(r["orphans"]) for r in rows),
        "not_json": sum(r["json_ok"] is False for r in rows), "failed_runs": len(failed),
        "failures": [{k: r[k] for k in ("case", "what", "args", "failures", "error")} for r in failed[:50]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structural", type=int, default=1000)
    parser.add_argument("--bytewise", type=int, default=150)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=CAMPAIGN_SEED, help="of the corpus (the test uses others)")
    parser.add_argument("--stack", type=int, default=2, help="at most this many mutations per model")
    parser.add_argument("--no-mobilenet", action="store_true", help="only the tiny conv and dense seeds")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "edgeq-fuzz-campaign")
    parser.add_argument("--summarize", action="store_true", help="only summarize OUT/results.jsonl of a run")
    a = parser.parse_args()
    if a.summarize:
        rows = [json.loads(line) for line in (a.out / "results.jsonl").read_text().splitlines()]
        print(json.dumps(summarize(rows, models=len({r["case"] for r in rows})), indent=2))
        return 1 if any(r["failures"] for r in rows) else 0
    summary = campaign(a.out, a.structural, a.bytewise, a.jobs, stack=a.stack, mobilenet=not a.no_mobilenet,
                       seed=a.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2))
    for f in summary["failures"][:20]:
        print(f)
    return 1 if summary["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
