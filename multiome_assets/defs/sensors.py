import dagster as dg

from multiome_assets.dataset import DatasetError, list_dataset_keys
from multiome_assets.defs.inputs import changed_inputs
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.partitions import dataset_partitions
from multiome_assets.defs.resources import DatasetCatalog

foundation_job = dg.define_asset_job(
    "foundation_job", selection=dg.AssetSelection.groups("foundation"), partitions_def=dataset_partitions
)


@dg.sensor(job=foundation_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def dataset_folder_sensor(context: dg.SensorEvaluationContext, datasets: DatasetCatalog,
                          warehouse: dg.ResourceParam[WarehouseIOManager]) -> dg.SensorResult:
    """Watches data/datasets/: registers each new folder as a partition and builds its foundation
    assets, and records a new data version for each input file or setting that changed (so what
    reads it shows as stale)."""
    known = set(context.instance.get_dynamic_partitions(dataset_partitions.name))
    keys = list_dataset_keys(datasets.root())
    new = [key for key in keys if key not in known]
    observations = []
    for key in keys:
        try:
            observations += changed_inputs(context.instance, key, datasets.spec(key), warehouse.directory())
        except DatasetError as e:  # a broken folder is reported by its build; it must not stop the others
            context.log.warning(str(e))
    if not new and not observations:
        return dg.SensorResult(skip_reason="no new dataset folders, no changed inputs")
    return dg.SensorResult(
        asset_events=observations,  # recorded before the runs start, so they read these versions
        dynamic_partitions_requests=[dataset_partitions.build_add_request(new)] if new else [],
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"new-dataset-{key}") for key in new],
    )
