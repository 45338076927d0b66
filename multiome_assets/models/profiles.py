"""The settings a model trains with come as a named profile, one row of its model's table
(`grn.pretrain.PROFILES`, `translation.train.PROFILES`):

- ``cpu``: sized so the bundled datasets train in minutes on 2 CPU cores;
- ``paper``: the paper's sizes and training, meant for a GPU.
"""
from typing import Literal, get_args

Profile = Literal["cpu", "paper"]
PROFILE_NAMES: tuple[str, ...] = get_args(Profile)


def check_profile(profile: str, table: dict) -> None:
    if profile not in table:
        raise ValueError(f"profile {profile!r} is not one of {sorted(table)}")
