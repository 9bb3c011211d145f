import types

import lightning as L
import numpy as np
import pytest
import torch

from samlab.data.batch import VideoBatch
from samlab.data.datamodules import (
    COCODataModule,
    MixedDataModule,
    MixedLoader,
    MOSEDataModule,
    SA1BDataModule,
    SAVDataModule,
    SynthVideoDataModule,
)
from samlab.data.datasets import ClipDataset, SeededSampler, collate_samples
from samlab.data.formats.davis import DAVISReader
from samlab.data.sampling import ClipSampler
from samlab.data.transforms import EvalTransform
from samlab.errors import DataError

SMALL = {"image_size": 32, "num_workers": 0, "seed": 0}


class BatchProbe(L.LightningModule):
    """Records the shapes of the batches it sees; its loss is a real function of the images."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: list[tuple] = []

    def training_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor:
        assert batch.images.dtype == torch.float32  # normalised on the device by the data module
        self.seen.append(("train", tuple(batch.images.shape), tuple(batch.masks.shape)))
        return (self.scale * batch.images.mean()) ** 2

    def validation_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.seen.append(("val", tuple(batch.images.shape), tuple(batch.masks.shape)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(datamodule) -> BatchProbe:
    probe = BatchProbe()
    trainer = L.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(probe, datamodule=datamodule)
    return probe


def test_mose_datamodule_fast_dev_run(mose_root):
    dm = MOSEDataModule(root=str(mose_root), val_root=str(mose_root), num_frames=4, batch_size=2, **SMALL)
    probe = _fit(dm)
    train = [s for s in probe.seen if s[0] == "train"]
    val = [s for s in probe.seen if s[0] == "val"]
    # 3 videos in batches of 2: a full batch, then the last video alone
    assert [s[1] for s in train] == [(4, 2, 3, 32, 32), (4, 1, 3, 32, 32)]
    assert [s[2][0] for s in train] == [4, 4] and 2 <= train[0][2][1] <= 6  # 1..3 objects per clip
    assert val and all(s[1][0] == 8 and s[1][1] == 1 for s in val)  # whole 8-frame videos


def test_sav_datamodule_fast_dev_run(sav_root, sav_val_root):
    dm = SAVDataModule(root=str(sav_root), val_root=str(sav_val_root), num_frames=3, **SMALL)
    probe = _fit(dm)
    assert any(s[0] == "train" and s[1][0] == 3 for s in probe.seen)
    assert any(s[0] == "val" and s[1][0] == 5 for s in probe.seen)


def test_image_datamodules_fast_dev_run(sa1b_root, coco_root):
    for dm in (
        SA1BDataModule(root=str(sa1b_root), val_root=str(sa1b_root), batch_size=2, **SMALL),
        COCODataModule(
            ann_file=str(next((coco_root / "annotations").glob("*.json"))),
            image_root=str(coco_root / "images"),
            batch_size=2,
            **SMALL,
        ),
    ):
        probe = _fit(dm)
        assert any(s[0] == "train" and s[1][:2] == (1, 2) for s in probe.seen)


def test_mixed_datamodule_alternates_images_and_videos(mose_root, sa1b_root):
    images = SA1BDataModule(root=str(sa1b_root), batch_size=2, **SMALL)
    videos = MOSEDataModule(root=str(mose_root), val_root=str(mose_root), num_frames=3, **SMALL)
    mixed = MixedDataModule([images, videos], weights=[1.0, 1.0], image_size=32)
    probe = BatchProbe()
    L.Trainer(
        max_steps=5,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=1,
    ).fit(probe, datamodule=mixed)
    kinds = {s[1][0] for s in probe.seen if s[0] == "train"}
    assert kinds == {1, 3}  # image batches (T=1) and video batches (T=3)


def test_mixed_loader_weights_and_epoch_seed():
    loaders = [list(range(100)), [f"v{i}" for i in range(100)]]

    class Listish(list):
        sampler = type("S", (), {"set_epoch": lambda self, e: None})()

    mixed = MixedLoader([Listish(loaders[0]), Listish(loaders[1])], weights=[3.0, 1.0], seed=0)
    assert len(mixed) == 200
    first = list(mixed)[:100]
    share = sum(isinstance(x, int) for x in first) / 100
    assert 0.65 < share < 0.85
    assert sorted(x for x in list(mixed) if isinstance(x, int)) == list(range(100))  # every batch, once
    again = list(mixed)[:100]
    assert again == first
    mixed.sampler.set_epoch(1)
    assert list(mixed)[:100] != first


def test_seeding_reproducible_and_differs_per_epoch_rank(mose_root):
    reader = DAVISReader(mose_root)
    dataset = ClipDataset(reader, ClipSampler(3, 2), EvalTransform(resolution=16), seed=5)
    a = dataset[(1, 0, 0)]
    assert torch.equal(torch.stack(a.frames), torch.stack(dataset[(1, 0, 0)].frames))
    assert a.frame_indices == dataset[(1, 0, 0)].frame_indices
    starts = {tuple(dataset[(1, epoch, rank)].frame_indices) for epoch in range(4) for rank in range(3)}
    assert len(starts) > 1
    sampler = SeededSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    sampler.set_epoch(3)
    keys = list(sampler)
    assert all(epoch == 3 and rank == 1 for _, epoch, rank in keys)
    other = SeededSampler(dataset, num_replicas=2, rank=0, shuffle=True, seed=0)
    other.set_epoch(3)
    assert not {k[0] for k in keys} & {k[0] for k in other} or len(dataset) % 2  # disjoint shards


def test_bad_sample_raises_or_is_skipped_and_counted(mose_root, tmp_path, caplog):
    import shutil

    root = tmp_path / "mose"
    shutil.copytree(mose_root, root)
    video = sorted((root / "JPEGImages").iterdir())[0]
    for frame in video.iterdir():
        frame.write_bytes(frame.read_bytes()[:-30])  # every frame of the first video truncated
    reader = DAVISReader(root)
    strict = ClipDataset(reader, ClipSampler(3, 2), EvalTransform(resolution=16))
    with pytest.raises(DataError, match="truncated JPEG"):
        strict[0]
    lenient = ClipDataset(reader, ClipSampler(3, 2), EvalTransform(resolution=16), skip_bad_samples=True)
    items = [lenient[(0, 0, 0)], lenient[(1, 0, 0)]]
    batch = collate_samples(items)
    assert batch.num_skipped >= 1
    assert video.name not in batch.video_names
    assert "skipping bad sample" in caplog.text and "truncated JPEG" in caplog.text


def test_short_video_error_names_the_video(mose_root):
    dataset = ClipDataset(DAVISReader(mose_root), ClipSampler(num_frames=20), EvalTransform(resolution=16))
    with pytest.raises(DataError, match="fewer than num_frames=20"):
        dataset[0]


def test_synth_video_datamodule_writes_once(tmp_path):
    dm = SynthVideoDataModule(
        root=str(tmp_path / "q"), train_videos=2, val_videos=1, frames=4, frame_size=(32, 40), num_frames=2, **SMALL
    )
    dm.prepare_data()
    assert len(list((tmp_path / "q" / "train" / "JPEGImages").iterdir())) == 2
    stamp = (tmp_path / "q" / "val" / "JPEGImages").stat().st_mtime_ns
    dm.prepare_data()
    assert (tmp_path / "q" / "val" / "JPEGImages").stat().st_mtime_ns == stamp
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.images.shape == (2, 1, 3, 32, 32)
    assert np.isfinite(batch.images.numpy()).all()


def test_loader_hands_uint8_and_the_datamodule_normalises_like_the_cpu_path(mose_root):
    dm = MOSEDataModule(root=str(mose_root), val_root=str(mose_root), **SMALL)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch.images.dtype == torch.uint8
    normalised = dm.on_after_batch_transfer(batch, 0)
    reference = ClipDataset(DAVISReader(mose_root), ClipSampler(None, None), EvalTransform(resolution=32))[0]
    torch.testing.assert_close(normalised.images[:, 0], torch.stack(reference.frames), atol=1e-5, rtol=0)


def test_seeded_loader_shards_over_the_trainers_processes():
    from samlab.data.datasets import seeded_loader

    class World:
        def __init__(self, size: int, rank: int) -> None:
            self.world_size, self.global_rank = size, rank
            self.strategy = types.SimpleNamespace(root_device=torch.device("cpu"))

    class Keys(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, key):
            return key

    data = Keys()
    single = seeded_loader(data, 3, training=False, collate_fn=list)
    assert [batch for batch in single] == [[(0, 0, 0), (1, 0, 0), (2, 0, 0)], [(3, 0, 0), (4, 0, 0), (5, 0, 0)],
                                           [(6, 0, 0), (7, 0, 0), (8, 0, 0)], [(9, 0, 0)]]  # fmt: skip
    shards = [seeded_loader(data, 5, True, list, World(2, r), seed=5) for r in range(2)]
    keys = [[key for batch in loader for key in batch] for loader in shards]
    assert {index for shard in keys for index, _, _ in shard} == set(range(10))  # every sample once over the 2 ranks
    assert [rank for shard in keys for _, _, rank in shard] == [0] * 5 + [1] * 5
    assert all(loader.drop_last for loader in shards) and not single.drop_last


def test_resumable_loader_continues_mid_epoch_and_after_a_complete_epoch():
    from samlab.data.datasets import ResumableLoader, seeded_loader

    class Keys(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, key):
            return key

    def loader() -> ResumableLoader:
        made = seeded_loader(Keys(), 3, training=True, collate_fn=list, seed=1)
        made.sampler.set_epoch(2)
        return made

    uninterrupted = list(loader())
    stopped = loader()
    iterator = iter(stopped)
    served = [next(iterator), next(iterator)]
    assert stopped.state_dict() == {"epoch": 2, "batches": 2}
    resumed = loader()
    resumed.sampler.set_epoch(0)
    resumed.load_state_dict(stopped.state_dict())
    assert served + list(resumed) == uninterrupted  # the same batches, none loaded twice
    assert resumed.state_dict() == {"epoch": 2, "batches": 4}
    assert list(resumed) == uninterrupted  # the skip applies to one iteration only
    finished = loader()
    finished.load_state_dict({"epoch": 2, "batches": 4})
    assert finished.sampler.epoch == 3 and finished.sampler.start == 0  # a complete epoch resumes at the next one


def test_mixed_loader_resumes_mid_epoch_with_the_same_draws_and_member_positions():
    from samlab.data.datamodules import MixedLoader
    from samlab.data.datasets import seeded_loader

    class Keys(torch.utils.data.Dataset):
        def __init__(self, name: str, size: int) -> None:
            self.name, self.size = name, size

        def __len__(self) -> int:
            return self.size

        def __getitem__(self, key):
            return (self.name, key[0])

    def mixed() -> MixedLoader:
        loaders = [seeded_loader(Keys("a", 6), 2, True, list, seed=1), seeded_loader(Keys("b", 9), 3, True, list)]
        made = MixedLoader(loaders, [1.0, 1.0], seed=4)
        made.sampler.set_epoch(1)
        return made

    uninterrupted = list(mixed())
    stopped = mixed()
    iterator = iter(stopped)
    served = [next(iterator) for _ in range(3)]
    resumed = mixed()
    resumed.load_state_dict(stopped.state_dict())
    assert stopped.state_dict() == {"epoch": 1, "batches": 3}
    assert served + list(resumed) == uninterrupted


def test_samples_do_not_depend_on_the_worker_that_loads_them(mose_root):
    from samlab.data.datasets import seeded_loader

    dataset = ClipDataset(DAVISReader(mose_root), ClipSampler(2, 2), EvalTransform(resolution=16), seed=3)
    one, two = (seeded_loader(dataset, 1, True, collate_samples, num_workers=n) for n in (0, 2))
    for a, b in zip(one, two, strict=True):
        assert a.video_names == b.video_names and torch.equal(a.images, b.images)


def test_transform_resolution_must_equal_image_size():
    from samlab.data.transforms import SAM2TrainTransform

    MOSEDataModule(image_size=64, train_transform=SAM2TrainTransform(resolution=64), val_transform=EvalTransform(64))
    with pytest.raises(ValueError, match="val_transform EvalTransform has resolution 32 but image_size is 64"):
        MOSEDataModule(image_size=64, val_transform=EvalTransform(32))


def test_instance_chunks_use_every_instance_once_per_epoch(tmp_path):
    import json

    from samlab.data.datasets import InstanceChunkDataset
    from samlab.data.formats.coco import COCOReader
    from samlab.data.synth import synthesize

    synthesize("coco", tmp_path, videos=3, size=(48, 64), seed=2, objects=5)
    ann = tmp_path / "annotations" / "instances.json"
    reader = COCOReader(ann, tmp_path / "images")
    per_image = {}
    for a in json.loads(ann.read_text())["annotations"]:
        if not a["iscrowd"]:
            per_image.setdefault(a["image_id"], set()).add(a["id"])
    dataset = InstanceChunkDataset(reader, chunk_size=2, seed=7)
    assert len(dataset) == sum(-(-len(ids) // 2) for ids in per_image.values())
    for epoch in (0, 1):
        seen = [dataset.chunk_ids(i, epoch) for i in range(len(dataset))]
        assert all(1 <= len(ids) <= 2 for ids in seen)
        assert sorted(i for ids in seen for i in ids) == sorted(i for ids in per_image.values() for i in ids)
        clip = dataset[(0, epoch, 0)]
        assert clip.object_ids == seen[0] and clip.masks.shape[1] == len(seen[0])
    partitions = [[dataset.chunk_ids(i, epoch) for i in range(len(dataset))] for epoch in (0, 1)]
    assert partitions[0] != partitions[1]  # a new partition every epoch

    dm = COCODataModule(ann_file=str(ann), image_root=str(tmp_path / "images"), image_size=32, instances_per_sample=2,
                        train_transform=EvalTransform(32, normalize=False))  # fmt: skip
    assert isinstance(dm.dataset("train"), InstanceChunkDataset) and len(dm.dataset("train")) == len(dataset)


def test_retry_bad_samples_counts_skips_and_gives_up_naming_the_source():
    from samlab.data.datasets import retry_bad_samples

    bad = {0, 3}

    def load(i, rng):
        if i in bad:
            raise DataError(f"item{i}", "broken")
        return i

    rngs = iter([np.random.default_rng(seed) for seed in range(10)])
    sample, skipped = retry_bad_samples(load, 0, lambda attempt: next(rngs), length=10, max_retries=5)
    assert sample not in bad and skipped >= 1
    assert retry_bad_samples(load, 5, np.random.default_rng, length=10, max_retries=0) == (5, 0)
    bad.update(range(10))
    with pytest.raises(DataError, match="src: 3 samples in a row were bad"):
        retry_bad_samples(load, 0, np.random.default_rng, length=10, max_retries=2, source="src")
