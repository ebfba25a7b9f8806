"""Cluster settings applied to pipeline tasks at compile time, all read from ``config.cluster``.

The pipeline builder calls :func:`configure_task` on every task. What it sets lands in the
compiled spec (container resources, retry policy, and the ``kubernetes`` platform config that
kfp-kubernetes writes); kfp.local ignores resources, retries and platform config, so the same
compiled spec still runs on one machine. Environment variables *are* honoured by kfp.local, which
is why the cache and GCS-key variables are only set when their volume is configured.

Secrets are only ever referenced by name: the compiled spec says "env AWS_SECRET_ACCESS_KEY from
secret tgap-object-store key AWS_SECRET_ACCESS_KEY", never a value.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from pipelines import images
from tgap.config import STAGES, ClusterConfig, ConfigError

# Where a GCS service-account key secret is mounted (it must hold the key file as `key.json`).
GCS_KEY_DIR = "/var/secrets/tgap-gcs"
GCS_KEY_FILE = "key.json"
CACHE_VOLUME = "tgap-model-cache"


def component_images(cluster: ClusterConfig, allow_floating_tag: bool = False) -> tuple[str, str]:
    """The (CPU image, GPU image) references the components run in: pinned by the digest that
    `make images` recorded, else tagged by content (``pipelines.images``). A configured tag
    that names no content is an error unless ``allow_floating_tag``."""
    return images.component_images(cluster, allow_floating=allow_floating_tag)


def on_gpu(stage: str, cluster: ClusterConfig) -> bool:
    """Whether ``stage`` (a name in ``tgap.config.STAGES``) runs on the GPU pool."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: not one of {', '.join(STAGES)}")
    return stage in cluster.gpu_stages


def configure_task(task: PipelineTask, cluster: ClusterConfig, gpu: bool) -> None:
    """Apply the cluster section to one task: pull secret, object-store secret; for GPU stages
    accelerator, requests, node pool, retries and model cache; for the others `cluster.cpu`'s
    CPU and memory requests.

    The image is not set here: the components are built on ``component_images(cluster)`` (some
    CPU-only stages, like preparing the base model, deliberately use the GPU image)."""
    if cluster.image_pull_secret:
        kubernetes.set_image_pull_secrets(task, [cluster.image_pull_secret])
    _use_object_store_secrets(task, cluster)
    if gpu:
        _use_gpu_node_pool(task, cluster)
        _use_model_cache(task, cluster)
        return
    if cluster.model_cache_pvc and not cluster.model_cache_path:
        # Checked here too so a bad config fails at compile time even without GPU tasks.
        raise ConfigError("cluster.model_cache_pvc is set but cluster.model_cache_path is empty")
    # Explicit requests: without them the scheduler packs heavy CPU stages onto one node.
    if cluster.cpu.cpu_request:
        task.set_cpu_request(cluster.cpu.cpu_request)
    if cluster.cpu.memory_request:
        task.set_memory_request(cluster.cpu.memory_request)


def _use_object_store_secrets(task: PipelineTask, cluster: ClusterConfig) -> None:
    if cluster.object_store_secret:
        if not cluster.object_store_keys:
            raise ConfigError(
                f"cluster.object_store_keys is empty but cluster.object_store_secret is "
                f"{cluster.object_store_secret!r}: map at least one secret key to an env variable"
            )
        kubernetes.use_secret_as_env(
            task,
            secret_name=cluster.object_store_secret,
            secret_key_to_env=dict(cluster.object_store_keys),
        )
    if cluster.gcs_credentials_secret:
        kubernetes.use_secret_as_volume(
            task, secret_name=cluster.gcs_credentials_secret, mount_path=GCS_KEY_DIR
        )
        task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_DIR}/{GCS_KEY_FILE}")


def _use_gpu_node_pool(task: PipelineTask, cluster: ClusterConfig) -> None:
    gpu = cluster.gpu
    if gpu.limit < 1:
        raise ConfigError(f"cluster.gpu.limit: {gpu.limit} (expected at least 1 GPU)")
    # KFP turns the accelerator "type" into the resource limit name (nvidia.com/gpu: <limit>).
    task.set_accelerator_type(gpu.accelerator)
    task.set_accelerator_limit(gpu.limit)
    if gpu.cpu_request:
        task.set_cpu_request(gpu.cpu_request)
    if gpu.memory_request:
        task.set_memory_request(gpu.memory_request)
    labels = dict(gpu.node_selector)
    if gpu.accelerator_type:
        labels.setdefault(gpu.accelerator_node_label, gpu.accelerator_type)
    for key, value in labels.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for i, toleration in enumerate(gpu.tolerations):
        unknown = set(toleration) - {"key", "operator", "value", "effect"}
        if unknown:
            raise ConfigError(
                f"cluster.gpu.tolerations[{i}]: unknown field(s) {sorted(unknown)} "
                "(expected key, operator, value, effect)"
            )
        kubernetes.add_toleration(
            task,
            key=toleration.get("key"),
            operator=toleration.get("operator"),
            value=toleration.get("value"),
            effect=toleration.get("effect"),
        )
    if cluster.retries > 0:
        # Preempted GPU nodes kill the pod; fine-tune resumes from its last checkpoint.
        task.set_retry(
            num_retries=cluster.retries,
            backoff_duration=cluster.retry_backoff,
            backoff_factor=cluster.retry_backoff_factor,
            backoff_max_duration=cluster.retry_backoff_max,
        )


def _use_model_cache(task: PipelineTask, cluster: ClusterConfig) -> None:
    if not cluster.model_cache_path:
        if cluster.model_cache_pvc:
            raise ConfigError(
                f"cluster.model_cache_pvc is {cluster.model_cache_pvc!r} but "
                "cluster.model_cache_path is empty: say where to mount it"
            )
        return
    if cluster.model_cache_pvc:
        kubernetes.mount_pvc(
            task, pvc_name=cluster.model_cache_pvc, mount_path=cluster.model_cache_path
        )
    else:
        kubernetes.empty_dir_mount(
            task,
            volume_name=CACHE_VOLUME,
            mount_path=cluster.model_cache_path,
            size_limit=cluster.model_cache_size or None,
        )
    task.set_env_variable("TGAP_CACHE", cluster.model_cache_path)
