"""The same assets on Kubernetes: dagster-k8s's `k8s_job_executor` runs each step in its own pod.

The code location of a cluster deployment (`deploy/`) loads `multiome_assets.k8s` instead of
`multiome_assets.definitions`: the same assets, sensors and schedules, with this executor. Each
pod gets the resources of its kind of step: steps in the `gpu` pool (training, translation, links)
request an NVIDIA GPU and tolerate GPU nodes' taint; the others ask for CPU and memory only. Pods
share no disk: the warehouse must be an object store (`MULTIOME_WAREHOUSE=s3://bucket/prefix`),
passed to every pod with the Secret that holds its credentials.

Settings, read from the code location's environment (deploy/values.yaml sets them):
    MULTIOME_WAREHOUSE        the object-store URL (required)
    MULTIOME_STORAGE_SECRET   the Secret with the store's credentials (default multiome-storage)
    MULTIOME_K8S_NAMESPACE    where step pods run (default: the run's namespace)
    MULTIOME_GPUS_PER_STEP    GPUs of a `gpu` step's pod (default 1); more than one trains the
                              backbones on all of them under torchrun (DDP)
    MULTIOME_DATA_PVC         a PersistentVolumeClaim holding data/ (datasets, reference), mounted
                              read-only at /data; without it, the data baked into the image
"""
from __future__ import annotations

import os

import dagster as dg
from dagster_k8s import k8s_job_executor

from multiome_assets.definitions import ASSETS, definitions
from multiome_assets.defs.resources import ComputeDevice
from multiome_assets.files import as_path, is_remote

# requests (what the scheduler reserves) and limits per kind of step; memory is what reading and
# QC of a 50k-cell dataset and a backbone epoch need with room to spare (docs/performance.md)
POD_RESOURCES = {
    "gpu": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "32Gi"}},  # per GPU
    "cpu": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}},
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DATA_MOUNT = "/data"


def step_kind(asset: dg.AssetsDefinition) -> str:
    return "gpu" if asset.op.pool == "gpu" else "cpu"


def gpu_pod_resources(gpus: int) -> dict:
    per_gpu = POD_RESOURCES["gpu"]
    return {"requests": {"cpu": str(gpus * int(per_gpu["requests"]["cpu"])),
                         "memory": f"{gpus * int(per_gpu['requests']['memory'][:-2])}Gi", "nvidia.com/gpu": str(gpus)},
            "limits": {"memory": f"{gpus * int(per_gpu['limits']['memory'][:-2])}Gi", "nvidia.com/gpu": str(gpus)}}


def per_step_k8s_config(assets, gpus: int = 1) -> dict[str, dict]:
    """dagster-k8s's per-step overrides, keyed by op name: GPUs and their nodes' taint for `gpu` steps."""
    config = {}
    for asset in assets:
        if isinstance(asset, dg.AssetsDefinition) and asset.is_executable and step_kind(asset) == "gpu":
            config[asset.op.name] = {"container_config": {"resources": gpu_pod_resources(gpus)},
                                     "pod_spec_config": {"tolerations": [GPU_TOLERATION]}}
    return config


def executor_config(env: dict[str, str] | None = None) -> dict:
    """The k8s_job_executor's config for this project, from the settings in `env` (os.environ)."""
    env = os.environ if env is None else env
    warehouse = env.get("MULTIOME_WAREHOUSE", "")
    if not warehouse or not is_remote(as_path(warehouse)):
        raise ValueError(f"MULTIOME_WAREHOUSE={warehouse!r}: on Kubernetes pods share no disk; set it to an "
                         "object-store URL such as s3://bucket/prefix")
    config = {
        "env_vars": [f"MULTIOME_WAREHOUSE={warehouse}"],
        "env_secrets": [env.get("MULTIOME_STORAGE_SECRET", "multiome-storage")],
        "step_k8s_config": {"container_config": {"resources": POD_RESOURCES["cpu"]}},
        "per_step_k8s_config": per_step_k8s_config(ASSETS, gpus_per_step(env)),
    }
    if env.get("MULTIOME_K8S_NAMESPACE"):
        config["job_namespace"] = env["MULTIOME_K8S_NAMESPACE"]
    if env.get("MULTIOME_DATA_PVC"):
        config["env_vars"].append(f"MULTIOME_DATA_DIR={DATA_MOUNT}")
        config["volumes"] = [{"name": "data", "persistent_volume_claim": {"claim_name": env["MULTIOME_DATA_PVC"],
                                                                          "read_only": True}}]
        config["volume_mounts"] = [{"name": "data", "mount_path": DATA_MOUNT, "read_only": True}]
    return config


def gpus_per_step(env) -> int:
    return int(env.get("MULTIOME_GPUS_PER_STEP", 1))


def k8s_definitions(env: dict[str, str] | None = None) -> dg.Definitions:
    env = os.environ if env is None else env
    return definitions(executor=k8s_job_executor.configured(executor_config(env)),
                       compute=ComputeDevice(processes=gpus_per_step(env)))


@dg.definitions
def defs() -> dg.Definitions:
    """What the cluster's code location loads (built when Dagster loads it, from its environment)."""
    return k8s_definitions()
