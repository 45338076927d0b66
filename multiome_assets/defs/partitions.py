import dagster as dg

# One partition per dataset folder under data/datasets/; keys are validated by `dataset.validate_key`.
dataset_partitions = dg.DynamicPartitionsDefinition(name="dataset")
