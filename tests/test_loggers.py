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


def test_run_folder_loggers_log_into_save_dir_version_n_and_need_a_save_dir(tmp_path):
    import pytest

    from samlab.loggers import CSVLogger, TensorBoardLogger

    assert CSVLogger(str(tmp_path)).log_dir == str(tmp_path / "version_0")  # no "lightning_logs" level
    assert TensorBoardLogger(str(tmp_path), version=3).log_dir == str(tmp_path / "version_3")
    with pytest.raises(ValueError, match="default_root_dir"):
        CSVLogger()
