import dagster as dg

from multiome_assets.dataset import list_dataset_keys
from multiome_assets.defs.partitions import dataset_partitions

foundation_job = dg.define_asset_job(
    "foundation_job", selection=dg.AssetSelection.groups("foundation"), partitions_def=dataset_partitions
)


@dg.sensor(job=foundation_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def dataset_folder_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Registers each new `data/datasets/<key>/` folder as a partition and builds its foundation assets."""
    known = set(context.instance.get_dynamic_partitions(dataset_partitions.name))
    new = [key for key in list_dataset_keys() if key not in known]
    if not new:
        return dg.SensorResult(skip_reason="no new dataset folders")
    return dg.SensorResult(
        dynamic_partitions_requests=[dataset_partitions.build_add_request(new)],
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"new-dataset-{key}") for key in new],
    )
