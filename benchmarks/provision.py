"""Figures for the provision flow on the sandbox: wall time, parallelism, requests and writes.

Run: ``.venv/bin/python benchmarks/provision.py [--time-scale 0] [--runs 2]``.

Starts an in-process sandbox and a temporary Prefect server (``prefect_test_harness``), then runs
``flows.provision.provision`` ``--runs`` times on one environment and prints, per run:
- wall time of the flow (from the first step's start to the last step's end, and of the call);
- parallelism: the sum of step durations divided by the steps' wall time (1.0 = fully serial);
- the critical path resource group -> cluster -> extension -> application, and its share of the wall;
- sandbox requests and writes (journal), and how many steps were created/updated/unchanged;
and, at the end, the process's peak RSS. With ``--time-scale 0.02`` the modelled Azure durations
(AKS create 300 s -> 6 s, extension 150 s -> 3 s) show whether the other branches hide behind the
critical path.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-"))
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(tmp / "results")

    from prefect.testing.utilities import prefect_test_harness

    from flows.provision import CRITICAL_PATH, provision
    from keyless_gitops.spec import EnvironmentSpec
    from keyless_gitops.target import sandbox_credentials
    from sandbox.server import Sandbox

    with Sandbox(tmp / "sandbox", time_scale=args.time_scale) as sb, prefect_test_harness():
        creds = sandbox_credentials(sb.connection)
        creds.save("bench-sandbox", overwrite=True)
        spec = EnvironmentSpec(environment="bench").for_subscription(sb.connection["subscription_id"])
        print(f"time_scale={args.time_scale}")
        print("run  call_s  steps_s  parallelism  critical_s  requests  writes  changes")
        for run in range(1, args.runs + 1):
            seq = sb.ctx.journal.last_seq
            t0 = time.perf_counter()
            result = provision(spec, "bench-sandbox", generate_missing_secrets=True)
            call = time.perf_counter() - t0
            steps = result.steps
            start = min(s.started for s in steps)
            end = max(s.ended for s in steps)
            wall = end - start
            busy = sum(s.duration for s in steps)
            by_step = {s.step: s for s in steps}
            critical = sum(by_step[name].duration for name in CRITICAL_PATH if name in by_step)
            entries = [e for e in sb.ctx.journal.entries(seq) if e.service != "admin"]
            writes = sum(1 for e in entries if e.write)
            changes = Counter(s.change for s in steps)
            print(
                f"{run:>3}  {call:6.2f}  {wall:7.2f}  {busy / wall:11.2f}  {critical:10.2f}"
                f"  {len(entries):8d}  {writes:6d}  {dict(changes)}"
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (sandbox + flow + client): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
