#!/usr/bin/env bash
# Build and push the tgap CPU and CUDA images (`make images`).
#
#   scripts/build-images.sh [CONFIG] [--no-push]
#
# The tags are the config's cluster.cpu_image and cluster.gpu_image (defaults in tgap/config.py,
# overridable per preset), the same values `tgap compile` writes into the pipeline spec, so the
# images built here are the images the compiled pipeline runs. CONFIG defaults to $CONFIG, else
# pipelines/configs/thesis.yaml. Run from anywhere; builds with the repository root as context.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

config="${CONFIG:-pipelines/configs/thesis.yaml}"
push=1
for arg in "$@"; do
    case "$arg" in
        --no-push) push=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) config="$arg" ;;
    esac
done

python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3

# One source of truth for the tags: the loaded config (so --set-style overrides in a preset apply).
read -r cpu_image gpu_image < <(
    "$python" - "$config" <<'PY'
import sys

from pipelines.cluster import component_images
from tgap.config import load_config

print(*component_images(load_config(sys.argv[1]).cluster))
PY
) || true

if [ -z "${gpu_image:-}" ]; then
    echo "build-images: could not read cluster.cpu_image/gpu_image from $config (error above)." >&2
    exit 1
fi
echo "config:    $config"
echo "CPU image: $cpu_image   (images/Dockerfile.cpu)"
echo "GPU image: $gpu_image   (images/Dockerfile.cuda)"

if ! command -v docker >/dev/null 2>&1; then
    echo "build-images: the docker command is not installed, so nothing was built; install Docker (or build the two" >&2
    echo "Dockerfiles with your CI's builder) and run again." >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "build-images: no Docker engine is reachable (\`docker info\` failed), so nothing was" >&2
    echo "built. Start dockerd (or point DOCKER_HOST at one) and run \`make images\` again." >&2
    exit 1
fi

docker build -f images/Dockerfile.cpu -t "$cpu_image" .
docker build -f images/Dockerfile.cuda -t "$gpu_image" .
if [ "$push" = 1 ]; then
    docker push "$cpu_image"
    docker push "$gpu_image"
else
    echo "--no-push: built $cpu_image and $gpu_image locally, not pushed."
fi
