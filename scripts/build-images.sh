#!/usr/bin/env bash
# Build and push the tgap CPU and CUDA images (`make images`), and record what was pushed.
#
#   scripts/build-images.sh [CONFIG] [--no-push]
#
# The repositories are the config's cluster.cpu_image and cluster.gpu_image (defaults in
# tgap/config/schema.py, overridable per preset); the tag is <version>-<content digest> of the
# Dockerfiles and the build context (pipelines/images.py), the tag `tgap compile` names. After
# the push the pushed digests go to images/digests.json, and `tgap compile` then names
# <repository>@sha256:... CONFIG defaults to $CONFIG, else pipelines/configs/thesis.yaml.
# Run from anywhere; builds with the repository root as context.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

config="${CONFIG:-pipelines/configs/thesis.yaml}"
push=1
for arg in "$@"; do
    case "$arg" in
        --no-push) push=0 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) config="$arg" ;;
    esac
done

python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3

# One source of truth for the references: the loaded config's repositories and the content tag.
read -r cpu_image gpu_image < <(
    "$python" -m pipelines.images tags "$config"
) || true

if [ -z "${gpu_image:-}" ]; then
    echo "build-images: could not read cluster.cpu_image/gpu_image from $config (error above)." >&2
    exit 1
fi
tag="${cpu_image##*:}"
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

revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
labels=(--label "org.opencontainers.image.version=$tag"
        --label "org.opencontainers.image.revision=$revision")
docker build -f images/Dockerfile.cpu "${labels[@]}" -t "$cpu_image" .
docker build -f images/Dockerfile.cuda "${labels[@]}" -t "$gpu_image" .
if [ "$push" = 0 ]; then
    echo "--no-push: built $cpu_image and $gpu_image locally; nothing pushed or recorded."
    exit 0
fi
docker push "$cpu_image"
docker push "$gpu_image"

# The digest the registry gave each pushed image: the RepoDigests entry of its repository.
pushed_digest() {
    local image="$1" repository="${1%:*}"
    docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" |
        grep -m1 "^${repository}@sha256:" || {
        echo "build-images: pushed $image, but \`docker image inspect\` lists no RepoDigests entry" >&2
        echo "for $repository, so nothing was recorded in images/digests.json." >&2
        return 1
    }
}
cpu_pushed="$(pushed_digest "$cpu_image")"
gpu_pushed="$(pushed_digest "$gpu_image")"
"$python" -m pipelines.images record "$tag" "$cpu_pushed" "$gpu_pushed"
echo "Commit images/digests.json and run \`make compile\`: the spec then names these digests."
