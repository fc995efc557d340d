"""Run embed_texts on a 2-node Ray cluster on this machine and remove the worker node mid-job.

    python -m tests.integration.node_loss_job <input> <output> <model>

Prints the run summary; the test reads the output folder. The cluster is always shut down,
also when the job fails or runs past its deadline.
"""

import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import rayjobs
from tests.integration.faulty_operators import slow_job_overrides

DEADLINE_S = 240


def main(source: str, out: str, model: str) -> int:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        cfg = rayjobs.compose("embed_texts", slow_job_overrides(source, out, model))
        outcome: dict = {}

        def job() -> None:
            try:
                outcome["summary"] = rayjobs.run(cfg).summary()
            except Exception as error:  # reported below, the cluster still goes down
                outcome["error"] = repr(error)

        runner = threading.Thread(target=job, daemon=True)
        runner.start()
        deadline = time.monotonic() + DEADLINE_S
        while len(list((Path(out) / "data").glob("*.parquet"))) < 3 and runner.is_alive():
            assert time.monotonic() < deadline, "no output before the deadline"
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)  # its tasks, actors and objects are gone
        print("worker node removed", flush=True)
        cluster.add_node(num_cpus=2)  # what an autoscaler does next
        runner.join(timeout=max(1.0, deadline - time.monotonic()))
        if runner.is_alive():
            print("TIMEOUT: the job did not finish after the node loss", flush=True)
            return 1
        print(outcome.get("summary") or f"FAILED: {outcome.get('error')}", flush=True)
        return 0 if "summary" in outcome else 1
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
