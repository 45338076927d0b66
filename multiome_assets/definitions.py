import dagster as dg

from multiome_assets.defs import foundation, grn, inputs, links, translation
from multiome_assets.defs.automation import (
    automation_sensor,
    input_observation_schedule,
    observe_inputs_job,
)
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.resources import ComputeDevice, DatasetCatalog
from multiome_assets.defs.sensors import dataset_folder_sensor, foundation_job

ASSETS = dg.load_assets_from_modules([inputs, foundation, grn, translation, links])
RESOURCES = {"warehouse": WarehouseIOManager(), "datasets": DatasetCatalog(), "compute": ComputeDevice()}



def definitions(executor: dg.ExecutorDefinition | None = None, **resources) -> dg.Definitions:
    """The project's definitions; `executor` and `resources` replace the defaults (deploy: k8s.py)."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[foundation_job, observe_inputs_job],
        schedules=[input_observation_schedule],
        sensors=[dataset_folder_sensor, automation_sensor],
        resources={**RESOURCES, **resources},
        executor=executor,
    )


defs = definitions()
