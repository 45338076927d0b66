"""The cluster configuration (multiome_assets/k8s.py, deploy/), checked with dagster-k8s's own code:
no cluster exists here, so the executor config is validated against the k8s_job_executor's schema
and the Job manifests its step handler would submit are built and inspected."""

import dagster as dg
import pytest
import yaml
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

from multiome_assets.dataset import PROJECT_ROOT
from multiome_assets.definitions import ASSETS, RESOURCES
from multiome_assets.k8s import executor_config, k8s_definitions

ENV = {"MULTIOME_WAREHOUSE": "s3://lab-bucket/multiome", "MULTIOME_STORAGE_SECRET": "lab-s3",
       "MULTIOME_K8S_NAMESPACE": "multiome", "MULTIOME_DATA_PVC": "multiome-data"}
IMAGE = "registry.example/multiome-assets:0.1.0"


def _asset_job(executor):
    defs = dg.Definitions(assets=ASSETS, resources=RESOURCES, executor=executor)
    return defs.resolve_implicit_global_asset_job_def()


def test_executor_config_validates_against_dagster_k8s_schema():
    job = _asset_job(k8s_job_executor)
    assert dg.validate_run_config(job, {"execution": {"config": executor_config(ENV)}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="per_step_k8s_confg"):  # the schema does bite
        dg.validate_run_config(job, {"execution": {"config": {"per_step_k8s_confg": {}}}})
    assert k8s_definitions(ENV).resolve_implicit_global_asset_job_def().executor_def.name == "k8s"


def test_a_local_warehouse_is_refused_on_a_cluster():
    for local in ("", "data/warehouse", "/mnt/warehouse"):
        with pytest.raises(ValueError, match="pods share no disk"):
            executor_config({"MULTIOME_WAREHOUSE": local})


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.fixture(scope="module")
def run_launcher(tmp_path_factory):
    """The K8sRunLauncher as deploy/values.yaml configures it (the kubeconfig names a cluster that
    is never contacted: building manifests needs none)."""
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    values = yaml.safe_load((PROJECT_ROOT / "deploy/values.yaml").read_text())
    secrets = [s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]]
    return K8sRunLauncher(service_account_name="dagster", instance_config_map="dagster-instance",
                          dagster_home="/opt/dagster/dagster_home", load_incluster_config=False,
                          kubeconfig_file=str(kubeconfig), job_namespace="dagster", env_secrets=secrets)


def _step_job(op_name: str, launcher):
    """The Job manifest the k8s_job_executor's step handler submits for a step: the same merge as
    K8sStepHandler._get_container_context (the run launcher's context, the executor's config, the
    step's per-op override), then dagster-k8s's construct_dagster_k8s_job."""
    config = executor_config(ENV)
    executor_context = K8sContainerContext(
        env_vars=config["env_vars"], env_secrets=config["env_secrets"], volumes=config["volumes"],
        volume_mounts=config["volume_mounts"], namespace=config["job_namespace"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config["step_k8s_config"]))
    context = (K8sContainerContext.create_for_run(dg.DagsterRun(job_name="__ASSET_JOB"), launcher, include_run_tags=False)
               .merge(executor_context)
               .merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                   config["per_step_k8s_config"].get(op_name, {})))))
    return construct_dagster_k8s_job(context.get_k8s_job_config(IMAGE, launcher), args=["dagster", "api", "execute_step"],
                                     job_name=f"dagster-step-{op_name}", pod_name=f"dagster-step-{op_name}",
                                     component="step_worker", user_defined_k8s_config=context.run_k8s_config)


@pytest.fixture
def step_pod(run_launcher):
    return lambda op_name: _container_and_pod(op_name, run_launcher)


def _container_and_pod(op_name: str, launcher):
    manifest = _step_job(op_name, launcher).to_dict()
    pod = manifest["spec"]["template"]["spec"]
    return pod["containers"][0], pod


@pytest.mark.parametrize("op_name", ["grn_backbone", "translator_rna2atac", "cre_gene_links"])
def test_gpu_pool_steps_request_a_gpu_and_carry_the_storage_settings(op_name, step_pod):
    container, pod = step_pod(op_name)
    assert container["image"] == IMAGE
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        [{k: v for k, v in t.items() if v is not None} for t in pod["tolerations"]]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MULTIOME_WAREHOUSE"] == "s3://lab-bucket/multiome" and env["MULTIOME_DATA_DIR"] == "/data"
    assert {s["secret_ref"]["name"] for s in container["env_from"]} == {"lab-s3", "multiome-storage"}
    assert pod["volumes"][0]["persistent_volume_claim"]["claim_name"] == "multiome-data"
    assert container["volume_mounts"][0]["mount_path"] == "/data" and container["volume_mounts"][0]["read_only"]


@pytest.mark.parametrize("op_name", ["multiome", "candidate_sets", "grn_baselines"])
def test_cpu_steps_request_cpu_and_memory_and_no_gpu(op_name, step_pod):
    container, pod = step_pod(op_name)
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert "nvidia.com/gpu" not in (container["resources"]["limits"] or {})
    assert not pod.get("tolerations")
    assert {e["name"]: e["value"] for e in container["env"]}["MULTIOME_WAREHOUSE"] == "s3://lab-bucket/multiome"


def test_every_gpu_pool_asset_gets_a_gpu_override():
    gpu_ops = {a.op.name for a in ASSETS if isinstance(a, dg.AssetsDefinition) and a.op.pool == "gpu"}
    assert gpu_ops and set(executor_config(ENV)["per_step_k8s_config"]) == gpu_ops


def test_several_gpus_per_step_train_the_backbones_under_torchrun(run_launcher):
    env = {**ENV, "MULTIOME_GPUS_PER_STEP": "4"}
    resources = executor_config(env)["per_step_k8s_config"]["grn_backbone"]["container_config"]["resources"]
    assert resources["requests"] == {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "4"}
    assert resources["limits"] == {"memory": "128Gi", "nvidia.com/gpu": "4"}
    compute = k8s_definitions(env).resources["compute"]
    assert (compute.device, compute.processes) == ("auto", 4)


def test_deploy_files_name_the_k8s_code_location_and_the_pinned_versions():
    values = yaml.safe_load((PROJECT_ROOT / "deploy/values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "multiome_assets.k8s"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["MULTIOME_WAREHOUSE"].startswith("s3://")
    dockerfile = (PROJECT_ROOT / "deploy/Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and "-c constraints.txt '.[k8s]'" in dockerfile
    import dagster_k8s

    # the image installs the versions CI tests: constraints.txt pins them, the package declares ranges
    pins = dict(line.split("#")[0].strip().split("==") for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line.split("#")[0])
    assert pins["dagster"] == dg.__version__ and pins["dagster-k8s"] == dagster_k8s.__version__
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '"dagster>=1.13,<1.14"' in pyproject and "==" not in pyproject.split("dependencies = [")[1].split("]")[0]
