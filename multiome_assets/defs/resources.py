from pathlib import Path

import dagster as dg

from multiome_assets.dataset import DatasetSpec, data_dir, load_spec


class DatasetCatalog(dg.ConfigurableResource):
    """Where dataset folders live (`<data_dir>/datasets/<key>/dataset.yaml`)."""

    data_dir: str = ""  # empty: $MULTIOME_DATA_DIR or the project's data/

    def root(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else data_dir()

    def spec(self, key: str) -> DatasetSpec:
        return load_spec(key, self.root())


class ComputeDevice(dg.ConfigurableResource):
    """Where models train: `auto` picks CUDA when a GPU is visible, else CPU. `processes` > 1 trains
    the backbones and translators under torchrun, DDP over that many processes (one per GPU; gloo on CPUs)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    processes: int = 1

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
