"""Config: the article's defaults, a lossless round trip, and one named error for every kind of bad input."""

from pathlib import Path

import pytest

from actlab import config
from actlab.config import ConfigError, build_config, load_config


def test_defaults_are_the_article_experiment():
    cfg = build_config({})
    assert cfg.model.sizes == (10, 18, 18, 4, 1)
    assert cfg.model.activation == "relu"
    assert (cfg.data.task, cfg.data.samples) == ("noise", 100)
    t = cfg.train
    assert (t.epochs, t.batch_size, t.lr, t.optimizer, t.loss, t.shuffle) == (150, 10, 0.001, "adam", "mse", False)


def test_round_trip_through_yaml(tmp_path):
    cfg = build_config({"model": {"activation": "tanh", "options": {"leaky_relu": {"negative_slope": 0.1}}},
                        "data": {"task": "teacher", "test_fraction": 0.2, "samples": 200},
                        "train": {"shuffle": True, "lr": 0.003}, "compare": {"activations": ["relu", "tanh"]}})
    path = tmp_path / "c.yaml"
    path.write_text(config.dump_yaml(cfg))
    assert load_config(path) == cfg


def test_shipped_configs_load():
    for path in sorted(Path(__file__).parent.parent.glob("configs/*.yaml")):
        load_config(path)
    assert load_config(Path(__file__).parent.parent / "configs" / "article.yaml") == build_config({})


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ({"train": {"epochs": 0}}, r"train\.epochs: must be at least 1"),
        ({"train": {"lr": 0}}, r"train\.lr: must be > 0"),
        ({"train": {"lr": -1e-3}}, r"train\.lr: must be > 0"),
        ({"train": {"lr": "fast"}}, r"train\.lr: must be a number"),
        ({"train": {"epochs": 1.5}}, r"train\.epochs: must be a whole number"),
        ({"train": {"shuffle": "yes please"}}, r"train\.shuffle: must be true or false"),
        ({"train": {"batch_size": 0}}, r"train\.batch_size: must be at least 1"),
        ({"train": {"batch_size": 101}}, r"train\.batch_size: is larger than the 100 training points"),
        ({"train": {"optimizer": "rmsprop"}}, r"train\.optimizer: must be one of adam, sgd"),
        ({"train": {"engine": "fast"}}, r"train\.engine: must be one of batched, loop"),
        ({"model": {"sizes": [10]}}, r"model\.sizes: needs at least two layer sizes"),
        ({"model": {"sizes": [10, 0, 1]}}, r"model\.sizes\[1\]: a layer size must be at least 1"),
        ({"model": {"sizes": [3, 4, 1]}}, r"model\.sizes\[0\]: the input layer has 3 units but task noise gives 10"),
        ({"model": {"sizes": [10, 4, 2]}}, r"model\.sizes: the output layer must have 1 unit"),
        ({"model": {"activation": "rellu"}}, r"model\.activation: unknown activation 'rellu': did you mean relu"),
        ({"model": {"options": {"elu": {"beta": 2}}}}, r"model\.options\.elu: elu has no option 'beta'"),
        ({"compare": {"activations": ["relu", "sigmoidd"]}}, r"compare\.activations\[1\]: unknown activation"),
        ({"compare": {"seeds": 0}}, r"compare\.seeds: must be at least 1"),
        ({"data": {"task": "mnist"}}, r"data\.task: unknown task 'mnist'"),
        ({"data": {"test_fraction": 1.0}}, r"data\.test_fraction: must be in \[0, 1\)"),
        ({"data": {"task": "cosine"}}, r"model\.sizes\[0\]: the input layer has 10 units but task cosine gives 1"),
        ({"device": "gpu"}, r"device: must be cpu, cuda, cuda:N or auto"),
        ({"trian": {"epochs": 3}}, r"trian: unknown key"),
        ({"train": {"epoch": 3}}, r"train\.epoch: unknown key; did you mean epochs\?"),
        ({"train": 5}, r"train: must be a mapping"),
        ({"output": {"name": "a/b"}}, r"output\.name: use letters, digits"),
    ],
)
def test_bad_values_name_their_key(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_config(raw)


def test_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  activation: relu\ntrain:\n  epochs: 10\n  lr: -0.5\n")
    with pytest.raises(ConfigError, match=rf"train\.lr: must be > 0 \(got -0\.5\) \({path} line 5\)"):
        load_config(path)


def test_override_source_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs: must be at least 1 \(got -2\) \(--epochs\)"):
        load_config(None, [("train.epochs", -2, "--epochs")])


def test_yaml_syntax_error_and_non_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml line \d+: not valid YAML"):
        load_config(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(listy)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_empty_file_is_the_default(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_config(empty) == build_config({})


def test_set_assignments_parse_as_yaml():
    assert config.parse_assignment("train.lr=3e-3") == ("train.lr", "3e-3")  # YAML 1.1: a string...
    cfg = load_config(None, [("train.lr", "3e-3", "--set")])
    assert cfg.train.lr == 0.003  # ...that the float field accepts
    assert config.parse_assignment("model.sizes=[10, 5, 1]") == ("model.sizes", [10, 5, 1])
    assert config.parse_assignment("train.shuffle=true") == ("train.shuffle", True)
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        config.parse_assignment("train.lr")


def test_all_expands_to_the_registry_without_duplicates():
    cfg = build_config({"compare": {"activations": ["relu", "all", "swish"]}})
    names = cfg.compared_activations()
    assert names[0] == "relu" and len(names) == len(set(names)) and "silu" in names


def test_reference_lists_every_field():
    keys = [row[0] for row in config.reference()]
    assert "train.lr" in keys and "model.sizes" in keys and "device" in keys


def test_diagnostics_dense_is_checked_and_is_no_grid_key():
    with pytest.raises(ConfigError, match=r"train\.diagnostics_dense: must be 0 \(every epoch\) or more \(got -1\)"):
        build_config({"train": {"diagnostics_dense": -1}})
    with pytest.raises(ConfigError, match=r"train\.diagnostics_dense: not a grid key"):
        build_config({"compare": {"grid": {"train.diagnostics_dense": [0, 10]}}})
    assert build_config({"train": {"diagnostics_dense": 0}}).train.diagnostics_dense == 0


def test_a_stored_config_from_before_the_schedule_reads_as_every_epoch(tmp_path):
    from actlab.config import dump_yaml, read_config

    text = dump_yaml(build_config({"train": {"diagnostics_dense": 4}}))
    assert "diagnostics_dense: 4" in text  # a stored config is resolved: the key is written
    (tmp_path / "new.yaml").write_text(text)
    (tmp_path / "old.yaml").write_text("\n".join(line for line in text.splitlines() if "diagnostics_dense" not in line))
    assert read_config(tmp_path / "new.yaml").train.diagnostics_dense == 4
    assert read_config(tmp_path / "old.yaml").train.diagnostics_dense == 0  # it measured every epoch
