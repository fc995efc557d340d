"""Run embed_texts on a 2-node Ray cluster on this machine and remove the worker node mid-job.

    python -m tests.integration.node_loss_job <input> <output> <model>

Prints the run summary; the test reads the output folder.
"""

import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import rayjobs


def main(source: str, out: str, model: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()

    def lose_the_worker() -> None:
        while len(list((Path(out) / "data").glob("*.parquet"))) < 3:
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)  # its tasks, actors and objects are gone
        print("worker node removed", flush=True)
        cluster.add_node(num_cpus=2)  # what an autoscaler does next

    threading.Thread(target=lose_the_worker, daemon=True).start()
    cfg = rayjobs.compose(
        "embed_texts",
        [
            f"input.path={source}",
            "input.id_column=doc_id",
            f"output.path={out}",
            "model._target_=tests.integration.faulty_operators.SlowTextEmbedder",
            f"model.path={model}",
            "+model.seconds_per_batch=0.05",
            "model.batch_size=8",
            "input.shard_rows=60",
            "preprocess.batch_size=30",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.1",
        ],
    )
    print(rayjobs.run(cfg).summary(), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
