"""Grid expansion: parsing --grid and compare.grid, scopes, stacks, depth/width, and bad input."""

import contextlib
import itertools
import textwrap

import pytest
import yaml

from actlab import config, grid, study


def test_parse_option_reads_yaml_values():
    axis = grid.parse_option("train.lr=1e-4,3e-4, 1e-3")
    assert axis.key == "train.lr" and axis.source == "--grid train.lr"
    assert [float(v) for v in axis.values] == [1e-4, 3e-4, 1e-3]
    sizes = grid.parse_option("model.sizes=[10, 4, 1],[10,8,8,1]")
    assert sizes.values == ([10, 4, 1], [10, 8, 8, 1])
    assert grid.parse_option("data.task=noise,teacher").values == ("noise", "teacher")


def test_combinations_are_the_cartesian_product_first_axis_slowest():
    axes = [grid.Axis("a", (1, 2), "x"), grid.Axis("b", ("p", "q", "r"), "x")]
    combos = grid.combinations(axes)
    assert combos == [{"a": a, "b": b} for a, b in itertools.product((1, 2), ("p", "q", "r"))]
    assert grid.combinations([]) == [{}]  # no grid: the base config is the one point


@pytest.mark.parametrize(("key", "expected"), [
    ("train.lr", "run"), ("model.init", "run"), ("model.init_bias", "run"),
    ("model.options", "run"), ("model.options.leaky_relu.negative_slope", "run"),
    ("model.sizes", "stack"), ("data.task", "stack"), ("data.samples", "stack"), ("train.batch_size", "stack"),
    ("train.epochs", "stack"), ("train.optimizer", "stack"), ("train.shuffle", "stack"), ("train.eps", "stack"),
    ("train.momentum", "stack"),
])
def test_scope_of_keys(key, expected):
    assert grid.scope(key) == expected


@pytest.mark.parametrize("key", ["output.name", "device", "train.engine", "train.workers", "train.chunk_size",
                                 "train.seed", "model.activation", "compare.seeds", "compare.activations"])
def test_keys_that_do_not_change_the_training_are_not_grid_keys(key):
    with pytest.raises(grid.GridError, match=rf"^{key}: not a grid key: .*\(--grid\)"):
        grid.scope(key)
    with pytest.raises(grid.GridError, match="not a grid key"):
        grid.load(None, [], [f"{key}=1,2"])


def test_points_are_validated_configs_and_carry_read_values():
    base, axes, points = grid.load(None, [("train.epochs", 5, "--epochs")], ["train.lr=1e-3,1e-2"])
    assert base.train.epochs == 5 and [a.key for a in axes] == ["train.lr"]
    assert [p.values for p in points] == [{"train.lr": 1e-3}, {"train.lr": 1e-2}]  # YAML's '1e-3' read as 0.001
    assert [p.config.train.lr for p in points] == [1e-3, 1e-2]
    assert all(p.config.train.epochs == 5 for p in points)
    # the rest of each point is the base config exactly
    assert points[0].config == config.build_config({"train": {"epochs": 5, "lr": 1e-3}})


def test_per_run_keys_share_a_stack_and_per_stack_keys_split_it():
    options = ["train.lr=1e-4,1e-3,1e-2", "train.batch_size=10,20",
               "model.options.leaky_relu.negative_slope=0.01,0.2"]
    _, axes, points = grid.load(None, [], options)
    stacks = grid.stacks(points, axes)
    assert [s.settings for s in stacks] == [{"train.batch_size": 10}, {"train.batch_size": 20}]
    assert [len(s.points) for s in stacks] == [6, 6]
    for s in stacks:
        assert {p.config.train.batch_size for p in s.points} == {s.settings["train.batch_size"]}
        assert len({(p.config.train.lr, repr(p.config.model.options)) for p in s.points}) == 6
    assert grid.columns(axes) == ["train.lr", "train.batch_size", "model.options.leaky_relu.negative_slope"]


def test_no_grid_is_one_point_one_stack():
    base, axes, points = grid.load(None, [], [])
    assert axes == [] and len(points) == 1 and points[0].config == base
    assert len(grid.stacks(points, axes)) == 1


def test_depth_and_width_expand_to_sizes_with_the_tasks_input():
    _, axes, points = grid.load(None, [], ["model.depth=1,3", "model.width=8", "data.task=noise,cosine"])
    sizes = {(p.values["model.depth"], p.values["data.task"]): p.config.model.sizes for p in points}
    assert sizes == {(1, "noise"): (10, 8, 1), (1, "cosine"): (1, 8, 1),
                     (3, "noise"): (10, 8, 8, 8, 1), (3, "cosine"): (1, 8, 8, 8, 1)}
    assert len(grid.stacks(points, axes)) == 4
    # only depth: the base config's first hidden width (the article's 18)
    _, _, points = grid.load(None, [], ["model.depth=2"])
    assert points[0].config.model.sizes == (10, 18, 18, 1)
    # only width: the base config's number of hidden layers (3)
    _, _, points = grid.load(None, [], ["model.width=5"])
    assert points[0].config.model.sizes == (10, 5, 5, 5, 1)
    assert grid.sizes_for(2, 7, 4) == (4, 7, 7, 1)


def write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_compare_grid_in_yaml_and_grid_flags_override_it(tmp_path):
    path = write(tmp_path, """\
        train:
          epochs: 3
        compare:
          seeds: 4
          grid:
            train.lr: [1e-4, 1e-3]
            train.batch_size: [10, 20]
        """)
    base, axes, points = grid.load(path, [], [])
    assert base.compare.seeds == 4 and base.train.epochs == 3
    assert [(a.key, len(a.values)) for a in axes] == [("train.lr", 2), ("train.batch_size", 2)]
    assert axes[0].source == f"{path} line 6" and len(points) == 4
    _, axes, points = grid.load(path, [], ["train.lr=1e-2,3e-2,1e-1"])
    assert [a.key for a in axes] == ["train.batch_size", "train.lr"] and len(points) == 6
    assert {p.config.train.lr for p in points} == {1e-2, 3e-2, 1e-1}


def test_a_bad_value_in_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, """\
        compare:
          grid:
            train.lr: [1e-3, fast]
        """)
    with pytest.raises(grid.GridError, match=rf"^train.lr: must be a number \(got 'fast'\) \({path} line 3\)$"):
        grid.load(path, [], [])
    path = write(tmp_path, "compare:\n  grid:\n    train.lr: 0.001\n")
    with pytest.raises(grid.GridError, match=r"compare.grid.train.lr: must be a list of values"):
        grid.load(path, [], [])


@pytest.mark.parametrize(("option", "message"), [
    ("train.lr=abc,1e-3", r"^train.lr: must be a number \(got 'abc'\) \(--grid train.lr\)"),
    ("train.lrr=1,2", r"^train.lrr: unknown key.*\(--grid train.lrr\)"),
    ("modle.sizes=[1,1]", r"^modle: unknown key.*\(--grid modle.sizes\)"),
    ("train.lr=", r"^train.lr: no values after '=' \(--grid train.lr\)"),
    ("train.lr", r"^--grid expects section.key=value1,value2"),
    ("=1,2", r"^--grid expects section.key=value1,value2"),
    ("train.lr=1e-3,,1e-2", r"^train.lr: .*\(--grid train.lr\)"),
    ("train.lr=[1e-3", r"^train.lr: cannot read the values .*\(--grid train.lr\)"),
    ("train.lr=1e-3,0.001", r"^train.lr: the same value twice on the grid \(--grid train.lr\)"),
    ("train.lr=-1", r"^train.lr: must be > 0 \(got -1.0\) \(--grid train.lr\)"),
    ("model.depth=0,1", r"^model.depth: must be a whole number of at least 1 \(got 0\) \(--grid model.depth\)"),
    ("model.width=two", r"^model.width: must be a whole number"),
    ("train.batch_size=10,500", r"^train.batch_size: is larger than the 100 training points.*\(--grid"),
])
def test_bad_grid_input_is_one_clear_line_naming_grid_and_the_key(option, message):
    with pytest.raises(grid.GridError, match=message) as info:
        grid.load(None, [], [option])
    assert "\n" not in str(info.value)
    assert isinstance(info.value, config.ConfigError)  # the CLI's existing handler: one line, exit code 2


def test_repeated_or_conflicting_axes_are_errors():
    with pytest.raises(grid.GridError, match="train.lr: given twice"):
        grid.load(None, [], ["train.lr=1e-3", "train.lr=1e-2"])
    with pytest.raises(grid.GridError, match="model.sizes: on the grid together with model.depth"):
        grid.load(None, [], ["model.sizes=[10,4,1]", "model.depth=2"])
    with pytest.raises(grid.GridError, match="empty list of values"):
        grid.check_axes([grid.Axis("train.lr", (), "--grid train.lr")])


def test_an_invalid_combination_names_the_grid_point():
    # 60 samples with a 0.5 test split leave 30 training points: batch 40 fails only in that combination
    with pytest.raises(grid.GridError, match=r"train.batch_size: is larger than the 30 training points.*"
                                             r"\[grid point data.samples=60, train.batch_size=40\]"):
        grid.load(None, [("data.test_fraction", 0.5, "--set data.test_fraction")],
                  ["data.samples=60,200", "train.batch_size=20,40"])


def test_plan_counts_runs_and_steps():
    _, axes, points = grid.load(None, [("compare.activations", ["relu", "tanh"], "x"), ("compare.seeds", 3, "x")],
                                ["train.lr=1e-3,1e-2", "train.batch_size=10,25"])
    rows = grid.plan(grid.stacks(points, axes))
    # 2 lrs x 2 activations x 3 seeds per stack; steps: 150 epochs x ceil(100 / batch) batches
    assert [(r["points"], r["runs"], r["steps"]) for r in rows] == [(2, 12, 12 * 150 * 10), (2, 12, 12 * 150 * 4)]


def test_split_grid_leaves_the_file_data_alone():
    raw = {"compare": {"seeds": 3, "grid": {"train.lr": [1]}}}
    rest, found = grid.split_grid(raw)
    assert rest == {"compare": {"seeds": 3}} and found == {"train.lr": [1]}
    assert raw["compare"]["grid"] == {"train.lr": [1]}


def test_an_error_in_a_key_off_the_grid_keeps_its_own_source():
    # the grid changes data.samples; the failing key is train.batch_size, which the grid did not set
    with pytest.raises(grid.GridError, match=r"^train.batch_size: .*\(--batch-size\) \[grid point "):
        grid.load(None, [("train.batch_size", 50, "--batch-size")], ["train.lr=1e-3", "data.samples=40"])


def test_lr_study_config_is_a_real_grid():
    assert "#+" not in (config.SHIPPED_DIR / "lr_study.yaml").read_text()  # every key of it exists now
    base, axes, points = grid.load(config.find_config("lr_study"))
    assert [p.config.train.lr for p in points] == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    assert len(base.compared_activations()) == 23 and base.compare.seeds == 20
    assert study.split_seeds(range(20), base.compare.tuning_seeds) == study.SeedSplit(tuple(range(10)),
                                                                                     tuple(range(10, 20)))
    assert base.data.validation_fraction == 0.2
    assert base.data.task == "teacher" and base.data.test_fraction > 0
    assert grid.base_setting(base, axes, points) == {"train.lr": 1e-3}  # the fixed-setting ranking is on the grid


def test_every_config_key_has_a_scope_or_a_reason():
    # today's keys, classified by hand: the oracle for the rule in grid.py's docstring
    expected = {
        "model.sizes": "stack", "model.activation": None, "model.options": "run",
        "data.task": "stack", "data.samples": "stack", "data.features": "stack", "data.noise": "stack",
        "data.test_fraction": "stack", "data.seed": "stack",
        "train.epochs": "stack", "train.batch_size": "stack", "train.lr": "run", "train.optimizer": "stack",
        "train.loss": "stack", "train.shuffle": "stack", "train.seed": None, "train.engine": None,
        "train.chunk_size": None, "train.workers": None, "train.diagnostics": None,
        "compare.activations": None, "compare.seeds": None, "output.runs_dir": None, "output.name": None,
        "device": None,
    }
    keys = [key for key, _, _ in config.reference()]
    for key in keys:
        if key not in expected:  # a key added after this test: it must at least classify or explain itself
            with contextlib.suppress(grid.GridError):
                assert grid.scope(key) in ("run", "stack")
            continue
        if expected[key] is None:
            with pytest.raises(grid.GridError, match=f"^{key}: not a grid key: "):
                grid.scope(key)
        else:
            assert grid.scope(key) == expected[key], key
    assert set(expected) <= set(keys)


def test_grid_round_trips_through_compare_grid_data():
    _, axes, points = grid.load(None, [], ["train.lr=1e-3,1e-2", "model.sizes=[10,4,1],[10,8,8,1]"])
    mapping = grid.as_mapping(axes, points)
    assert mapping == {"train.lr": [1e-3, 1e-2], "model.sizes": [[10, 4, 1], [10, 8, 8, 1]]}
    yaml_text = yaml.safe_dump({"compare": {"grid": mapping}}, sort_keys=False)  # as config.dump_yaml writes
    raw, found = grid.split_grid(yaml.safe_load(yaml_text))
    again = grid.expand(raw, grid.from_mapping(found, config.Sources()))
    assert [p.config for p in again] == [p.config for p in points]


def test_base_setting_is_the_fixed_ranking_point_when_on_the_grid():
    base, axes, points = grid.load(None, [], ["train.lr=1e-4,1e-3,1e-2"])
    assert grid.base_setting(base, axes, points) == {"train.lr": 1e-3}
    base, axes, points = grid.load(None, [], ["train.lr=1e-2,3e-2"])
    assert grid.base_setting(base, axes, points) is None  # the base lr 0.001 was not trained
    base, axes, points = grid.load(None, [("model.sizes", [10, 8, 8, 1], "x")], ["model.depth=1,2"])
    assert grid.base_setting(base, axes, points) == {"model.depth": 2}
    base, axes, points = grid.load(None, [], ["model.width=4,18"])  # the article's 18-18-4: no single width
    assert grid.base_setting(base, axes, points) is None


def test_label_is_short_and_stable():
    assert grid.label({"train.lr": 0.001, "model.sizes": (10, 4, 1)}) == "train.lr=0.001,model.sizes=[10,4,1]"
    assert grid.label({}) == ""
