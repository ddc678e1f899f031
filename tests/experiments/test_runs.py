"""Recommender run configs: model, data and split are each spelled {name, **parameters}; validated up front."""

from __future__ import annotations

import pytest

from recforge.config import dump_toml, load_toml, to_dict
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.experiments.folder import RunFolder
from recforge.experiments.runs import RunConfig, build_model, load_run, make_split, resolve_config


def test_every_section_is_name_plus_parameters(tmp_path):
    cfg = resolve_config("ease", "some/log.csv", overrides=["model.l2=30", "split.name=random", "split.test_frac=0.3",
                                                            "data.sep=;"])
    assert cfg.model == {"name": "ease", "l2": 30}
    assert cfg.data == {"name": "some/log.csv", "sep": ";"}
    assert cfg.split == {"name": "random", "test_frac": 0.3}
    dump_toml(to_dict(cfg), tmp_path / "config.toml")
    assert resolve_config(config_file=tmp_path / "config.toml") == cfg
    assert load_toml(tmp_path / "config.toml")["split"] == {"name": "random", "test_frac": 0.3}


def test_defaults():
    cfg = resolve_config("popular")
    assert cfg.data == {"name": "ml-latest-small"} and cfg.split == {"name": "leave_last_out"}


def test_another_dataset_drops_the_files_options(tmp_path):
    (tmp_path / "run.toml").write_text('[model]\nname = "ease"\n[data]\nname = "a.tsv"\nsep = "\\t"\n')
    assert resolve_config(config_file=tmp_path / "run.toml").data == {"name": "a.tsv", "sep": "\t"}
    assert resolve_config(data="b.csv", config_file=tmp_path / "run.toml").data == {"name": "b.csv"}


def test_the_splitter_gets_its_parameters_and_the_run_seed():
    data = planted_clusters(n_users=60, n_items=40, events_per_user=10, seed=0)
    a = make_split(resolve_config("popular", overrides=["split.name=random", "seed=3"]), data)
    b = make_split(resolve_config("popular", overrides=["split.name=random", "split.seed=3"]), data)
    c = make_split(resolve_config("popular", overrides=["split.name=random", "seed=4"]), data)
    assert a.hash == b.hash != c.hash
    two = make_split(resolve_config("popular", overrides=["split.n=2"]), data)
    assert len(two.test) == 2 * 60


def test_the_run_seed_reaches_a_models_own_seed_or_its_trainers():
    assert build_model(resolve_config("als", overrides=["seed=5"])).config.seed == 5
    assert build_model(resolve_config("bpr", overrides=["seed=5"])).config.train.seed == 5
    assert build_model(resolve_config("sasrec", overrides=["seed=5"])).config.train.seed == 5
    explicit = build_model(resolve_config("sasrec", overrides=["seed=5", "model.train.seed=2", "model.train.epochs=3"]))
    assert (explicit.config.train.seed, explicit.config.train.epochs) == (2, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["split.name=weird"], "unknown splitter 'weird'"),
        (["split.kind=temporal"], r"unknown split parameter\(s\) \['split.kind'\]"),
        (["split.params.n=2"], r"\['split.params'\]"),
        (["split.name=temporal", "split.n=2"], r"\['split.n'\] for temporal"),
        (["data.name="], "data.name is required"),
        (["model.nope=1"], "model.nope"),
    ],
)
def test_bad_sections_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("ease", overrides=overrides)


def test_a_section_without_a_name_is_a_config_error():
    with pytest.raises(ConfigError, match="split.name is required"):
        RunConfig(model={"name": "ease"}, split={"kind": "temporal"})


def test_another_paradigms_run_is_not_a_recommender_run(tmp_path):
    with RunFolder.create(tmp_path / "crs", kind="crs", name="ear", config={"policy": {"name": "ear"}}) as run:
        run.write_metrics({"test": {}})
        run.finish()
    with pytest.raises(DataError, match="is a crs run, not a recommender run"):
        load_run(tmp_path / "crs")
