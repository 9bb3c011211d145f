import pytest

from samlab.loggers import WandbLogger


@pytest.mark.parametrize(
    ("env", "offline"),
    [
        ({}, True),
        ({"WANDB_MODE": "offline"}, True),
        ({"WANDB_MODE": "dryrun"}, True),
        ({"WANDB_MODE": "online"}, False),
        ({"WANDB_MODE": "disabled"}, False),
        ({"WANDB_SWEEP_ID": "abc"}, False),
        ({"WANDB_SWEEP_ID": "abc", "WANDB_MODE": "offline"}, True),
    ],
)
def test_wandb_logger_is_offline_unless_the_environment_turns_it_on(monkeypatch, tmp_path, env, offline):
    for key in ("WANDB_MODE", "WANDB_SWEEP_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert WandbLogger(project="p", save_dir=str(tmp_path))._offline is offline


def test_explicit_offline_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    assert WandbLogger(project="p", save_dir=str(tmp_path), offline=True)._offline is True
