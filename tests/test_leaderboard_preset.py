"""configs/cpu_leaderboard.toml is the `cpu_web` recipe with exactly the changes that won at equal time,
and it is the recipe that experiments/leaderboard.toml put against the `cpu` recipe."""

import dataclasses
from pathlib import Path

from cs336_basics.config import load_config
from cs336_basics.sweep import load_spec

REPO = Path(__file__).resolve().parent.parent


def flat(config) -> dict:
    return {f"{section}.{key}": value for section, values in dataclasses.asdict(config).items()
            for key, value in values.items()}


def test_the_cpu_leaderboard_preset_is_cpu_web_with_the_kept_changes():
    web, leaderboard = flat(load_config(REPO / "configs" / "cpu_web.toml")), flat(load_config(REPO / "configs" / "cpu_leaderboard.toml"))
    changed = {key for key in web if web[key] != leaderboard[key]}
    assert changed == {"run.precision", "model.zero_init_proj", "model.value_embedding", "model.token_shift",
                       "model.bigram_buckets", "optim.bigram_weight_decay",
                       "optim.lr", "schedule.max_seconds", "schedule.max_steps", "run.out_dir", "run.num_threads"}
    assert (leaderboard["run.precision"], leaderboard["model.zero_init_proj"], leaderboard["model.value_embedding"],
            leaderboard["model.token_shift"]) == ("bf16", True, True, True)
    assert leaderboard["model.bigram_buckets"] > 0 and leaderboard["optim.bigram_weight_decay"] > 0
    assert leaderboard["schedule.max_seconds"] == 855  # the cpu preset's train time
    # max_steps is the clock's unit and a cap: above the steps two threads make, so time ends the run
    assert leaderboard["schedule.max_steps"] > web["schedule.max_steps"]


def test_the_head_to_head_ran_the_preset_against_the_cpu_recipe():
    spec = load_spec(REPO / "experiments" / "leaderboard.toml")
    assert spec.base.name == "cpu_web.toml"
    preset = flat(load_config(REPO / "configs" / "cpu_leaderboard.toml"))
    ran = [flat(load_config(spec.base, [*spec.common, *overrides])) for overrides in spec.variants.values()]
    how = {"run.out_dir", "run.num_threads"}  # (the sweep runs one thread per run)
    assert any({k: v for k, v in r.items() if k not in how} == {k: v for k, v in preset.items() if k not in how}
               for r in ran)
    baselines = [r for r in ran if r["run.precision"] == "fp32" and not r["model.zero_init_proj"]]
    assert len({r["optim.lr"] for r in baselines}) >= 2  # its rate retuned (a rate may run again, in a later session)
