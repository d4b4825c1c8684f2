"""Confirm a flow run's final state through the Prefect API (PITFALLS P29).

``prefect deployment run --watch`` can return before the run is over when its event stream drops;
this waits (bounded) until the run is in a terminal state and exits 0 only if it Completed.

    python deployments/ci_confirm.py <flow-run-id> [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from prefect.client.orchestration import get_client


def final_state(flow_run_id: uuid.UUID, timeout: float, interval: float = 2.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            state = run.state
            if state is not None and state.is_final():
                return str(state.type.value), str(state.name)
            if time.monotonic() > deadline:
                return "TIMEOUT", str(state.name if state else "no state")
            time.sleep(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow_run_id", type=uuid.UUID)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    kind, name = final_state(args.flow_run_id, args.timeout)
    print(f"flow run {args.flow_run_id}: {name} ({kind})")
    return 0 if kind == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
