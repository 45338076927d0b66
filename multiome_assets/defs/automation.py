"""The platform keeping itself current with Dagster's own mechanisms: a schedule that observes every
dataset's inputs (nightly by default), and declarative automation on what a prior feeds, so that a
new prior release or an edited prior file reruns exactly `prior_edges` → heads, baselines → edge
scores → evaluation (and enrichment) of the datasets that read it, and nothing upstream.

A changed input is recorded as a new data version of its observable source asset (by this
schedule's runs, by `dataset_folder_sensor` every 30 s under `make ui`, or by `multiome-assets
build`/`register`/`priors update`); the automation sensor then requests the runs. The same content
observed again is no update, so it requests nothing. A code change marks assets stale but does not
rerun them: retraining is a user's decision (`multiome-assets build --stale`)."""
import os

import dagster as dg

from multiome_assets.defs.inputs import INPUTS
from multiome_assets.defs.partitions import dataset_partitions

OBSERVE_CRON = os.environ.get("MULTIOME_OBSERVE_CRON", "0 3 * * *")  # nightly at 03:00 by default

# on every asset downstream of input/prior and input/tf_list but the GRN's gene selection and what
# reaches them only through it (tests check the set stays exact)
FOLLOWS_INPUTS = dg.AutomationCondition.eager()
NOT_FOLLOWING = dg.AssetKey("grn_genes")  # a new gene set retrains the backbones: a deliberate rerun


def following(graph, inputs) -> set[dg.AssetKey]:
    """What reruns on its own when `inputs` change: everything downstream of them, except through
    NOT_FOLLOWING."""
    out, todo = set(), list(inputs)
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child != NOT_FOLLOWING and child not in out:
                out.add(child)
                todo.append(child)
    return out

observe_inputs_job = dg.define_asset_job(
    "observe_inputs", selection=dg.AssetSelection.assets(*INPUTS.values()), partitions_def=dataset_partitions)


@dg.schedule(job=observe_inputs_job, cron_schedule=OBSERVE_CRON, default_status=dg.DefaultScheduleStatus.RUNNING)
def input_observation_schedule(context: dg.ScheduleEvaluationContext):
    """Observes the inputs of every registered dataset (one run each): a replaced reference prior
    becomes a new data version for every dataset that names it. Cron: $MULTIOME_OBSERVE_CRON."""
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    keys = context.instance.get_dynamic_partitions(dataset_partitions.name)
    return [dg.RunRequest(partition_key=key, run_key=f"observe-{key}-{tick}") for key in keys] or \
        dg.SkipReason("no dataset registered")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30)
