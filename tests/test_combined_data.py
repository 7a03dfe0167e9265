"""Several data sets in one fit (CombinedDataModule) and labels expressed in another label space (label_space)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from multimodal_fer.cli import main
from multimodal_fer.datamodules import CombinedDataModule
from multimodal_fer.datamodules.label_mapping import (
    LabelMapper,
    label_space_of_run,
    resolve_label_space,
    union_of,
)
from multimodal_fer.datamodules.member_batches import (
    MEMBER_KEY,
    MemberBatches,
    MemberBatchSampler,
    PlanSampler,
    evaluation_plan,
)
from multimodal_fer.datasets import DISFA, RAFDB, OfficialSplits, SubjectPartitions
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.reporting.builder import build_report
from multimodal_fer.reporting.grouping import group_records
from multimodal_fer.reporting.records import load_records
from multimodal_fer.types import PRESENT_KEY, UNION_LABEL_SPACE, LabelSpace

from adapter_checks import REPO, tiny_datamodule
from data.disfa.generate import write_fake_disfa
from data.rafdb.generate import write_fake_rafdb

#: configs/data/disfa.yaml's three subject parts (the fake DISFA's subjects lie in them).
DISFA_PARTS = yaml.safe_load((REPO / "configs" / "data" / "disfa.yaml").read_text())["data"]["init_args"]["split"][
    "init_args"
]["parts"]
RAFDB_SPACE = RAFDB().label_space
DISFA_SPACE = DISFA().label_space


def _rafdb(raw: Path, root: Path, **options):
    return tiny_datamodule(RAFDB(), raw, root, split=OfficialSplits(val_fraction=0.2), **options)


def _disfa(raw: Path, root: Path, **options):
    return tiny_datamodule(DISFA(), raw, root, split=SubjectPartitions(parts=DISFA_PARTS, test_part=3), **options)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Fake RAF-DB (7 expressions) and DISFA (8 AUs) raw files and their prepared 32-px caches."""
    folder = tmp_path_factory.mktemp("combined")
    write_fake_rafdb(folder / "rafdb_raw")
    write_fake_disfa(folder / "disfa_raw")
    _rafdb(folder / "rafdb_raw", folder / "rafdb").prepare()
    _disfa(folder / "disfa_raw", folder / "disfa").prepare()
    return folder


def _combined(folder: Path, **options) -> CombinedDataModule:
    members = {
        "rafdb": _rafdb(folder / "rafdb_raw", folder / "rafdb"),
        "disfa": _disfa(folder / "disfa_raw", folder / "disfa"),
    }
    return CombinedDataModule(members, batch_size=4, num_workers=0, **options)


# ------------------------------------------------------------------------------------------------ label spaces
def test_the_union_of_spaces_follows_the_vocabulary_and_keeps_the_longest_dimensions():
    first = LabelSpace(expressions=("sad", "happy"), action_units=(12,), dimensions=("valence", "arousal"))
    second = LabelSpace(expressions=("neutral", "happy"), action_units=(1, 12), dimensions=())
    union = union_of([first, second])
    assert union.expressions == ("neutral", "happy", "sad")
    assert union.action_units == (1, 12)
    assert union.dimensions == ("valence", "arousal")


def test_a_label_space_is_resolved_from_a_name_a_mapping_or_a_run_and_refused_when_it_keeps_nothing(tmp_path):
    assert resolve_label_space(None, RAFDB_SPACE) == RAFDB_SPACE
    assert resolve_label_space("union", RAFDB_SPACE) == UNION_LABEL_SPACE
    written = {"expressions": ["happy", "sad"], "action_units": [], "dimensions": []}
    assert resolve_label_space(written, RAFDB_SPACE).expressions == ("happy", "sad")
    with pytest.raises(DataError, match="shares no class, AU or affect dimension"):
        resolve_label_space({"action_units": [12]}, RAFDB_SPACE)
    with pytest.raises(DataError, match="not in the package's vocabulary"):
        resolve_label_space({"expressions": ["glee"]}, RAFDB_SPACE)
    with pytest.raises(DataError, match="neither a run folder nor a checkpoint"):
        resolve_label_space(str(tmp_path / "nothing.ckpt"), RAFDB_SPACE)
    # a run folder: its best checkpoint's saved label space
    run = tmp_path / "runs" / "rafdb" / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"hyper_parameters": {"label_space": written}}, run / "checkpoints" / "best-epoch=03.ckpt")
    (run / "run.json").write_text(json.dumps({"best_checkpoint": "checkpoints/best-epoch=03.ckpt"}))
    assert label_space_of_run(run) == LabelSpace.from_dict(written)
    assert resolve_label_space(str(run), RAFDB_SPACE).expressions == ("happy", "sad")
    torch.save({"hyper_parameters": {}}, run / "checkpoints" / "other.ckpt")
    with pytest.raises(DataError, match="records no label space"):
        label_space_of_run(run / "checkpoints" / "other.ckpt")


def test_the_mapper_moves_labels_by_name_and_creates_the_tasks_a_data_set_lacks():
    source = LabelSpace(expressions=("sad", "happy", "contempt"), action_units=(), dimensions=())
    target = LabelSpace(expressions=("neutral", "happy", "sad"), action_units=(6, 12), dimensions=("valence",))
    batch = {"index": torch.arange(4), "expr": torch.tensor([0, 1, 2, -1])}
    mapped = LabelMapper(source, target)(batch)
    assert mapped["expr"].tolist() == [2, 1, -1, -1]  # contempt has no counterpart: unlabelled
    assert mapped["au"].shape == (4, 2) and torch.isnan(mapped["au"]).all()
    assert mapped["va"].shape == (4, 1) and torch.isnan(mapped["va"]).all()


def test_a_data_module_hands_out_its_labels_in_the_space_asked_for(caches):
    own = _rafdb(caches / "rafdb_raw", caches / "rafdb")
    union = _rafdb(caches / "rafdb_raw", caches / "rafdb", label_space="union")
    assert union.label_space == UNION_LABEL_SPACE
    own_batch = own.dataset("train").__getitems__(list(range(4)))
    union_batch = union.dataset("train").__getitems__(list(range(4)))
    names = [RAFDB_SPACE.expressions[code] for code in own_batch["expr"].tolist()]
    assert [UNION_LABEL_SPACE.expressions[code] for code in union_batch["expr"].tolist()] == names
    assert union_batch["au"].shape == (4, UNION_LABEL_SPACE.num_action_units)
    assert torch.isnan(union_batch["au"]).all() and torch.isnan(union_batch["va"]).all()
    own_counts, union_counts = own.expression_class_counts(), union.expression_class_counts()
    for index, name in enumerate(RAFDB_SPACE.expressions):
        assert union_counts[UNION_LABEL_SPACE.expressions.index(name)] == own_counts[index]
    assert int(union_counts.sum()) == int(own_counts.sum())
    assert union.au_positive_weight().tolist() == [1.0] * UNION_LABEL_SPACE.num_action_units


# ------------------------------------------------------------------------------------------------ member batches
def test_training_batches_depend_on_seed_and_epoch_only_and_never_mix_members():
    sampler = MemberBatchSampler([10, 6], batch_size=4, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 2 + 1  # full batches only
    assert first == list(MemberBatchSampler([10, 6], batch_size=4, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != first
    for _, positions in first:
        assert len(positions) == 4 and len(set(positions)) == 4
    by_member = {0: [], 1: []}
    for member, positions in first:
        by_member[member] += positions
    assert max(by_member[0]) < 10 and max(by_member[1]) < 6
    equal = list(MemberBatchSampler([10, 6], batch_size=4, seed=3, sampling="equal"))
    assert sorted(member for member, _ in equal) == [0, 0, 1, 1]  # the small member's samples drawn again
    with pytest.raises(DataError, match="smaller than one batch"):
        MemberBatchSampler([10, 3], batch_size=4, seed=0)
    with pytest.raises(DataError, match="sampling="):
        MemberBatchSampler([10], batch_size=4, seed=0, sampling="random")


def test_evaluation_batches_hold_every_sample_once_and_shard_without_repeats():
    plan = evaluation_plan([5, 3], batch_size=2)
    assert plan == [(0, (0, 1)), (0, (2, 3)), (0, (4,)), (1, (0, 1)), (1, (2,))]
    shards = [list(PlanSampler(plan, num_replicas=2, rank=rank)) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(plan)
    assert len(shards[0]) == 3 and len(shards[1]) == 2
    with pytest.raises(DataError, match="fewer than the 8 processes"):
        PlanSampler(plan, num_replicas=8, rank=0)


def test_a_member_without_a_modality_has_it_marked_absent():
    class Faces(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitems__(self, positions):
            size = len(positions)
            return {
                "index": torch.tensor(positions),
                "face": torch.zeros(size, 3, 8, 8),
                PRESENT_KEY: {"face": torch.ones(size, dtype=torch.bool)},
            }

    batch = MemberBatches([Faces(), Faces()], ("face", "audio"))[(1, (0, 2))]
    assert batch[MEMBER_KEY].tolist() == [1, 1]
    assert batch[PRESENT_KEY]["face"].all() and not batch[PRESENT_KEY]["audio"].any()
    assert "audio" not in batch


# ------------------------------------------------------------------------------------------------ combined module
def test_the_combined_module_labels_each_task_from_the_members_that_have_it(caches):
    combined = _combined(caches)
    assert combined.label_space == union_of([RAFDB_SPACE, DISFA_SPACE])
    assert combined.label_space.expressions == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    assert combined.label_space.action_units == DISFA_SPACE.action_units
    combined.setup("fit")
    seen = set()
    for batch in combined.train_dataloader():
        member = int(batch[MEMBER_KEY][0])
        assert (batch[MEMBER_KEY] == member).all()
        seen.add(member)
        if member == 0:  # RAF-DB: expressions, no AUs
            assert (batch["expr"] >= 0).all() and torch.isnan(batch["au"]).all()
        else:  # DISFA: AUs, no expression
            assert (batch["expr"] == -1).all() and not torch.isnan(batch["au"]).any()
    assert seen == {0, 1}
    rafdb, disfa = combined.members.values()
    assert len(combined.train_dataloader()) == rafdb.splits["train"].size // 4 + disfa.splits["train"].size // 4
    val_samples = sum(int(batch["index"].shape[0]) for batch in combined.val_dataloader())
    assert val_samples == rafdb.splits["val"].size + disfa.splits["val"].size
    # statistics pool the members in the combined space
    assert int(combined.expression_class_counts().sum()) == int(rafdb.expression_class_counts().sum())
    au = np.concatenate([disfa.training_labels()[1]])
    expected = np.clip((len(au) - au.sum(0)) / np.maximum(au.sum(0), 1), 1, 50)
    assert np.allclose(combined.au_positive_weight().numpy(), expected)
    with pytest.raises(DataError, match="each member is tested on its own"):
        combined.test_dataloader()
    with pytest.raises(DataError, match="to predict, give one member's data config"):
        combined.predict_dataloader()


def test_members_that_one_model_cannot_read_together_are_refused(caches, tmp_path):
    members = {
        "rafdb": _rafdb(caches / "rafdb_raw", caches / "rafdb"),
        "disfa": tiny_datamodule(
            DISFA(),
            caches / "disfa_raw",
            caches / "disfa64",
            split=SubjectPartitions(parts=DISFA_PARTS, test_part=3),
            preprocessing=MediaPreprocessing(image_size=64),
        ),
    }
    with pytest.raises(DataError, match=r"disagree on image_size.*preprocessing\.image_size"):
        CombinedDataModule(members)
    with pytest.raises(DataError, match="letters, digits"):
        CombinedDataModule({"raf db": _rafdb(caches / "rafdb_raw", caches / "rafdb")})
    with pytest.raises(DataError, match="at least one member"):
        CombinedDataModule({})
    with pytest.raises(DataError, match=r"sampling='random': choose one of \['proportional', 'equal'\]"):
        CombinedDataModule({"rafdb": _rafdb(caches / "rafdb_raw", caches / "rafdb")}, sampling="random")
    unprepared = _rafdb(caches / "rafdb_raw", tmp_path / "cache")
    unprepared.raw_root = None  # no cache and no raw files: the member's option is named as a member's
    missing = CombinedDataModule({"rafdb": unprepared}, batch_size=4)
    with pytest.raises(DataError, match=r"Member 'rafdb': .*--data\.init_args\.members\.rafdb\.init_args\."):
        missing.prepare_data()
    given = {"rafdb": _rafdb(caches / "rafdb_raw", caches / "rafdb", label_space="union")}
    with pytest.raises(DataError, match="leave label_space unset in the members"):
        CombinedDataModule({**given, "disfa": _disfa(caches / "disfa_raw", caches / "disfa")})


def _combined_config(caches: Path, path: Path) -> Path:
    """configs/data/combined.yaml with RAF-DB and DISFA pointed at the fake files, at 32 px and batches of 4."""
    config = yaml.safe_load((REPO / "configs" / "data" / "combined.yaml").read_text())
    arguments = config["data"]["init_args"]
    arguments.update(batch_size=4, num_workers=0)
    members = arguments["members"]
    del members["affectnet"]
    for name in ("rafdb", "disfa"):
        members[name]["init_args"].update(
            raw_root=str(caches / f"{name}_raw"), root=str(caches / name), preprocessing={"image_size": 32}
        )
    members["rafdb"]["init_args"]["split"]["init_args"]["val_fraction"] = 0.2
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_combined_fit_is_tested_member_by_member_and_its_space_tests_a_data_set_alone(caches, tmp_path):
    config = _combined_config(caches, tmp_path / "combined.yaml")
    main(["prepare", "--config", str(config)])  # both caches complete: checked, not rebuilt
    main(["show-batch", "--config", str(config), "--output", str(tmp_path / "batch.png"), "--rows", "2"])
    assert (tmp_path / "batch-rafdb.png").stat().st_size and (tmp_path / "batch-disfa.png").stat().st_size
    runs = tmp_path / "runs"
    common = ["--trainer.logger=false", f"--run.root={runs}", "--run.experiment=both", "--run.name=run"]
    quickstart = str(REPO / "configs" / "quickstart.yaml")
    main(["fit", "--config", quickstart, "--config", str(config), "--trainer.max_epochs=1", *common])
    run = runs / "both" / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["dataset"] == "combined" and set(record["members"]) == {"rafdb", "disfa"}
    rafdb = json.loads((run / "results-test-rafdb.json").read_text())
    disfa = json.loads((run / "results-test-disfa.json").read_text())
    assert rafdb["condition"] == "test-rafdb" and rafdb["data"]["dataset"] == "rafdb"
    assert disfa["condition"] == "test-disfa" and disfa["data"]["root"] == str(caches / "disfa")
    assert "test/expr/f1_macro" in rafdb["metrics"] and "test/au/f1_mean" not in rafdb["metrics"]
    assert "test/au/f1_mean" in disfa["metrics"] and "test/expr/f1_macro" not in disfa["metrics"]
    assert rafdb["label_space"] == disfa["label_space"] == union_of([RAFDB_SPACE, DISFA_SPACE]).to_dict()
    # raw photos: the combined model's expression and AU columns, through the first member's (RAF-DB's) preprocessing
    photos = sorted((caches / "rafdb_raw" / "basic" / "Image" / "aligned").glob("test_000[12]_aligned.jpg"))
    table = tmp_path / "photos.csv"
    checkpoint = run / record["best_checkpoint"]
    main(
        ["predict", "--ckpt_path", str(checkpoint), "--inputs", *map(str, photos), "--aligned", "--output", str(table)]
    )
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert rows[0]["expression"] in RAFDB_SPACE.expressions and 0.0 <= float(rows[0]["au12"]) <= 1.0
    assert rows[0]["trained_on"] == "combined: rafdb (rafdb), disfa (disfa)"
    # RAF-DB alone, through its own config, in the run's label space
    rafdb_alone = [
        "--config",
        str(REPO / "configs" / "data" / "rafdb.yaml"),
        f"--data.init_args.raw_root={caches / 'rafdb_raw'}",
        f"--data.init_args.root={caches / 'rafdb'}",
        "--data.init_args.preprocessing.image_size=32",
        "--data.init_args.split.init_args.val_fraction=0.2",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        f"--data.init_args.label_space={run}",
    ]
    main(["test", "--config", quickstart, *rafdb_alone, "--ckpt_path", "best", *common])
    alone = json.loads((run / "results-test.json").read_text())
    assert alone["metrics"]["test/expr/f1_macro"] == pytest.approx(rafdb["metrics"]["test/expr/f1_macro"])
    # a RAF-DB run of its own: the report sets the combined run's RAF-DB results beside it, in one table
    single = ["--trainer.logger=false", f"--run.root={runs}", "--run.experiment=rafdb", "--run.name=run"]
    main(["fit", "--config", quickstart, *rafdb_alone[:-1], "--trainer.max_epochs=1", *single])
    inputs = [run / "results-test-rafdb.json", run / "results-test-disfa.json", runs / "rafdb"]
    groups = {group.title: group for group in group_records(load_records(inputs))}
    titles = sorted(groups)
    assert len(titles) == 2 and titles[0].startswith("disfa · ") and titles[1].startswith("rafdb · ")
    assert all(title.endswith(" · test") for title in titles)
    assert len(groups[titles[1]].settings) == 2  # the combined fit and RAF-DB alone, one table
    assert len(build_report(inputs).sections) == 2


@pytest.mark.slow
def test_a_combined_fit_runs_under_ddp_on_two_cpu_processes(caches, tmp_path):
    """Training batches go through Lightning's distributed sampler, validation batches through the plan's shards."""
    config = _combined_config(caches, tmp_path / "combined.yaml")
    command = [sys.executable, "-m", "multimodal_fer", "fit", "--config", str(REPO / "configs" / "quickstart.yaml")]
    command += ["--config", str(config), "--trainer.max_epochs=1", "--trainer.logger=false"]
    command += [f"--run.root={tmp_path / 'runs'}", "--run.experiment=ddp", "--run.name=run"]
    command += ["--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.accelerator=cpu"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for member in ("rafdb", "disfa"):
        results = json.loads((tmp_path / "runs" / "ddp" / "run" / f"results-test-{member}.json").read_text())
        assert results["environment"]["world_size"] == 2 and results["data"]["dataset"] == member


@pytest.mark.slow
def test_a_killed_combined_fit_resumes_to_the_uninterrupted_runs_results(caches, tmp_path):
    """Member batches are drawn from the seed and the epoch alone, so a fit killed after epoch 2 of 3 and resumed
    ends with the uninterrupted fit's test figures on both members."""
    config = _combined_config(caches, tmp_path / "combined.yaml")
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO / "tests")}

    def fit(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "multimodal_fer", "fit", "--config", str(REPO / "configs" / "quickstart.yaml")]
        command += ["--config", str(config), "--trainer.max_epochs=3", "--trainer.logger=false"]
        command += [f"--run.root={tmp_path / 'runs'}", "--run.experiment=resume", *extra]
        return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)

    whole = fit("--run.name=whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    kill = '{"class_path": "run_faults.SigkillAtEpochEnd", "init_args": {"epoch": 2}}'
    killed = fit("--run.name=killed", f"--trainer.callbacks+={kill}")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = fit("--run.name=killed", "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for member in ("rafdb", "disfa"):
        expected = json.loads((tmp_path / "runs" / "resume" / "whole" / f"results-test-{member}.json").read_text())
        found = json.loads((tmp_path / "runs" / "resume" / "killed" / f"results-test-{member}.json").read_text())
        assert found["metrics"] == expected["metrics"], member


@pytest.mark.slow  # three one-epoch combined fits: about 30 s on 2 shared cores
def test_a_member_is_cross_validated_while_the_others_train_in_every_fold_and_a_rerun_refits_nothing(
    caches, tmp_path, capsys
):
    config = _combined_config(caches, tmp_path / "combined.yaml")
    quickstart = str(REPO / "configs" / "quickstart.yaml")
    out = tmp_path / "cv"
    common = ["--config", quickstart, "--config", str(config), "--out", str(out), "--folds", "3"]
    extra = ["--trainer.max_epochs=1", "--trainer.logger=false", "--trainer.accelerator=cpu"]
    with pytest.raises(SystemExit, match="name the member whose subjects the folds divide with --member"):
        main(["crossval", *common, *extra])
    with pytest.raises(SystemExit, match="--member affectnet: the combined data module's members are rafdb, disfa"):
        main(["crossval", *common, "--member", "affectnet", "--dry-run"])
    with pytest.raises(SystemExit, match="leave --member out"):
        main(["crossval", "--config", quickstart, "--folds", "3", "--member", "disfa", "--dry-run"])
    main(["crossval", *common, "--member", "disfa", "--name", "disfa3", *extra])
    suite = out / "disfa3"
    aggregate = json.loads((suite / "aggregate.json").read_text())
    assert aggregate["protocol"] == "member disfa: SubjectKFold(num_folds=3, seed=0)"
    assert [fold["results"] for fold in aggregate["folds"]] == [
        f"00{k}-fold={k}/results-test-disfa.json" for k in range(3)
    ]
    # Every DISFA sample is tested by exactly one fold; RAF-DB keeps its own test split in every fold.
    disfa = _disfa(caches / "disfa_raw", caches / "disfa")
    disfa.setup("test")
    usable = sum(int(disfa.splits[split].size) for split in ("train", "val", "test"))
    assert aggregate["pooled_samples"] == usable and "test/au/f1_mean" in aggregate["metrics"]
    subjects = set()
    for k in range(3):
        fold = suite / f"00{k}-fold={k}"
        tested = json.loads((fold / "results-test-disfa.json").read_text())
        assert tested["data"]["protocol"] == f"SubjectKFold(num_folds=3, fold={k}, seed=0)"
        with np.load(fold / tested["predictions"]) as predictions:
            assert not subjects & set(predictions["subject"].tolist())  # subject-exclusive folds
            subjects |= set(predictions["subject"].tolist())
        rafdb = json.loads((fold / "results-test-rafdb.json").read_text())
        assert rafdb["data"]["protocol"].startswith("OfficialSplits")
    # mfer report: DISFA's folds as one cross-validation with its pooled figure, no expression tables for DISFA.
    inputs = [suite]
    sections = {section.title: section for section in build_report(inputs).sections}
    disfa_section = next(section for title, section in sections.items() if title.startswith("disfa · SubjectKFold"))
    assert any("pooled" in table.title for table in disfa_section.tables)
    assert not any("expression" in table.title or "confusion" in table.title for table in disfa_section.tables)
    assert not any("Per-class F1" in note for note in disfa_section.notes)
    # Done is done: the rerun fits and tests nothing again (no results-test-disfa.2.json).
    capsys.readouterr()
    main(["crossval", *common, "--member", "disfa", "--name", "disfa3", *extra])
    printed = capsys.readouterr()
    assert (printed.out + printed.err).count("done before, skipped") == 3
    assert not list(suite.glob("*/results-test-*.2.json"))
