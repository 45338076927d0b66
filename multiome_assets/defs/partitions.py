import dagster as dg

# One partition per dataset folder under data/datasets/; keys are validated by `dataset.validate_key`.
dataset_partitions = dg.DynamicPartitionsDefinition(name="dataset")

# Which datasets an asset applies to. A single-modality dataset (only RNA, or only ATAC) gets the
# assets that read what it has, and the cross-dataset ones only datasets naming `translator_from`;
# `multiome-assets build` selects by these tags (`build.applicable`).
NEEDS_TAG = "multiome/needs"  # "rna", "atac", "rna.atac" or "any"; untagged: "rna.atac"
TRANSLATOR_FROM_TAG = "multiome/translator_from"  # "required"


def needs(modalities: str, translator_from: bool = False) -> dict[str, str]:
    return {NEEDS_TAG: modalities} | ({TRANSLATOR_FROM_TAG: "required"} if translator_from else {})
