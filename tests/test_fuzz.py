"""Property-based fuzzing of every loader of user input: the matrix (parsed trees and raw
files), the toolset manifest, results.json (and the reports rendered from what it accepts) and
the pin files. Any input either loads or is an InputError whose every problem is one bounded
line; no other exception, ever."""
import json
import math
import os
import re
import stat

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.scenario import model
from harness.matrix.checks import ENV_NAME
from harness import matrix
from harness.scenario import paths as path_registry
from harness.runtimes import pins
from harness.host import toolset
from harness.core.errors import InputError, bad_character
from harness.report import html, junit, records, results

LINE_BOUND = 600  # a problem line: source path + key + message with every value cut to ~80 chars
FUZZ = settings(max_examples=int(os.environ.get("GPU_HARNESS_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "rootfs").mkdir()
    (folder / "a-file").write_text("x")
    program = folder / "prog"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return folder


def loads_or_fails_cleanly(load):
    """Run `load`; an InputError must hold one-line problems of bounded length. Returns the result
    or None."""
    try:
        return load()
    except InputError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.splitlines() == [problem], problem
            assert 0 < len(problem) <= LINE_BOUND, problem
        return None


NASTY_TEXT = st.sampled_from([
    "", " ", "gl", "host", "software", "a\nb", "nul\x00", "\ud800", "x" * 1000, "../..", "/",
                              "/usr",
    "/nonexistent", "a b", '"a b"', "*", "[", "nan", "é", "\u2028", "\x1b[31m", "{version}", "-",
])
TEXT = NASTY_TEXT | st.text(max_size=12)
SCALAR = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 300,
                                                                  max_value=10 ** 400)
          | st.floats() | TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner,
                                                                                        max_size=4),
                    max_leaves=12)


def maybe(strategy):
    """Mostly the well-shaped value (so that validation is reached deep down), sometimes
    anything."""
    return st.sampled_from([False] * 7 + [True]).flatmap(lambda wild: JSON if wild else strategy)


def often(good, other):
    """`good` five times in six, else `other`."""
    return st.sampled_from([False] * 5 + [True]).flatmap(lambda odd: other if odd else good)


def tables(keys, values, max_size=3):
    return maybe(st.dictionaries(keys, values, max_size=max_size))


def lists(values, max_size=3):
    return maybe(st.lists(values, max_size=max_size))


NUMBER = maybe(st.integers(-5, 400) | st.floats() | st.sampled_from([0, -1, 1e300, 10 ** 400,
                                                                     math.nan, math.inf]))
TAME = st.sampled_from(["gl", "x", "A", "1", "--frames=2", "quiet", "host", "deb", "software", "*"])


def settings_tables(text):
    """The per-scenario settings of [defaults] and [[override]], with leaves drawn from `text`."""
    return {
        "timeout_s": NUMBER,
        "tolerance": maybe(st.fixed_dictionaries({}, optional={"channel": NUMBER,
                                                               "fraction": NUMBER})),
        "env": tables(st.sampled_from(["A", "_B1", "1X", "A-B", "A B", ""]) | text, maybe(text)),
        "probe_args": lists(maybe(text)),
        "kernel_args": lists(maybe(text | st.sampled_from(['quiet', 'a="b c"', 'a b', 'a"b']))),
        "golden": maybe(text | st.sampled_from(["gl", "..", ".", "a/b", "g\n"])),
    }


@st.composite
def declarations(draw, workdir):
    """Matrix trees of the real shape; half of them with tame leaves, so that some expand."""
    text = draw(st.sampled_from([TAME, TEXT]))
    path_id = often(st.sampled_from(list(path_registry.PATHS)), text)
    runtime_name = often(st.sampled_from(["host", "deb"]), st.sampled_from(["a/b", "x y",
                                                                            "r.1"]) | text)
    root = st.sampled_from([str(workdir / "rootfs"), str(workdir / "a-file"), "/nonexistent", "rel",
                            "/"]) | text
    runtime = st.fixed_dictionaries({}, optional={
        "kind": maybe(st.sampled_from(["rootfs", "host", "vm-image"])), "root": maybe(root),
        "description": maybe(text)})
    matrix_table = st.fixed_dictionaries({"paths": maybe(st.lists(maybe(path_id), min_size=1,
                                                                  max_size=4))}, optional={
        "runtimes": lists(maybe(runtime_name)), "probes": lists(maybe(often(st.just("gl"), text))),
        "exclude": often(st.just([]), lists(tables(st.sampled_from(["path", "runtime",
                                                                    "probe"]) | text,
                                                   maybe(text))))})
    override = st.fixed_dictionaries({"match": maybe(st.sampled_from(["*", "vtest-*",
                                                                      "nothing"]) | text)},
                                     optional={
        "expect": maybe(st.sampled_from(["pass", "fail"])), "reason": maybe(text),
                                               **settings_tables(text)})
    return draw(maybe(st.fixed_dictionaries({"matrix": maybe(matrix_table)}, optional={
        "runtimes": often(st.fixed_dictionaries({"deb": maybe(runtime)}), tables(runtime_name,
                                                                                 maybe(runtime))),
        "defaults": maybe(st.fixed_dictionaries({}, optional=settings_tables(text))),
        "override": lists(maybe(override))})))


def assert_sane(scenario: model.Scenario):
    assert math.isfinite(scenario.timeout_s) and 0 < scenario.timeout_s <= matrix.MAX_TIMEOUT_S
    assert 0 <= scenario.tolerance.channel <= 255 and 0 <= scenario.tolerance.fraction <= 1
    texts = [scenario.golden, scenario.runtime.root, *scenario.probe_args, *scenario.kernel_args,
             *(value for _, value in scenario.env)]
    assert all(isinstance(text, str) and bad_character(text) is None for text in texts)
    assert all(ENV_NAME.match(name) for name, _ in scenario.env)
    # one word on the cmdline
    assert all(re.fullmatch(r'(?:[^\s"]|"[^"]*")+', arg) for arg in scenario.kernel_args)
    assert "/" not in scenario.golden and scenario.golden != ".."
    if scenario.runtime.kind == "rootfs":
        assert os.path.isdir(scenario.runtime.root)


@FUZZ
@given(data=st.data())
def test_matrix_expand_of_any_tree(workdir, data):
    declaration = data.draw(declarations(workdir))
    loaded = loads_or_fails_cleanly(lambda: matrix.expand(declaration, "m.toml"))
    if loaded is not None:
        assert loaded.scenarios
        for scenario in loaded.scenarios:
            assert_sane(scenario)


def file_bytes(valid):
    """Raw bytes: random, or a well-formed document cut, spliced with junk, or nested very
    deeply."""
    spliced = st.tuples(valid, st.integers(0, 400), st.binary(max_size=8)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:])
    deep = st.sampled_from([b"[" * 100000, b"a = " + b"[" * 100000, b'{"a":' * 50000,
                            b"x = " + b"1" * 5000])
    return st.binary(max_size=200) | valid | spliced | deep | st.just(b"\xff\xfe{}")


MATRIX_FILES = st.sampled_from([
    b'[matrix]\npaths = ["software", "vtest-virgl"]\n[defaults]\ntimeout_s = nan\n',
    b'[matrix]\npaths = ["software"]\n[runtimes.r]\ndescription = ["x"]\n',
    b'{"matrix": {"paths": ["software"]}, "defaults": {"env": {"A": "b\\nc"}}}',
])


@FUZZ
@given(raw=file_bytes(MATRIX_FILES), suffix=st.sampled_from([".toml", ".json"]))
def test_read_declaration_of_any_bytes(workdir, raw, suffix):
    path = workdir / f"matrix{suffix}"
    path.write_bytes(raw)
    loaded = loads_or_fails_cleanly(lambda: matrix.load(path))
    if loaded is not None:
        for scenario in loaded.scenarios:
            assert_sane(scenario)


@st.composite
def manifests(draw, workdir):
    path = maybe(st.sampled_from([str(workdir / "prog"), str(workdir / "a-file"), str(workdir),
                                  "/nonexistent",
                                  "relative/bin", "/bin/sh", "/a\x00b", None]) | TEXT)
    extra = tables(st.sampled_from(["modules_dir", "dri_dirs", "drivers", "libEGL"]) | TEXT, JSON)
    entry = st.fixed_dictionaries({}, optional={"path": path, "version": maybe(TEXT | st.none()),
                                                "extra": extra})
    name = often(st.sampled_from(list(toolset.TOOL_SPECS)), st.just("my-tool") | TEXT)
    return draw(maybe(st.fixed_dictionaries({"schema": maybe(st.just(toolset.SCHEMA)),
                                             "tools": tables(name, maybe(entry), 4)},
                                            optional={"render_nodes": JSON, "source": JSON})))


def assert_manifest_sane(loaded: toolset.Toolset):
    for name, tool in loaded.tools.items():
        if tool.found:
            assert os.path.isabs(tool.path) and os.path.exists(tool.path)
            if name in toolset.TOOL_SPECS and toolset.TOOL_SPECS[name].executable:
                assert os.path.isfile(tool.path) and os.access(tool.path, os.X_OK)
        else:
            why = loaded.why_missing(name)
            assert why.startswith(name) and why.splitlines() == [why]
    json.dumps(loaded.to_dict())


@FUZZ
@given(data=st.data())
def test_manifest_of_any_tree(workdir, data):
    path = workdir / "toolset.json"
    path.write_text(json.dumps(data.draw(manifests(workdir))))
    loaded = loads_or_fails_cleanly(lambda: toolset.load_manifest(path))
    if loaded is not None:
        assert_manifest_sane(loaded)


@FUZZ
@given(raw=file_bytes(st.just(b'{"schema": "gpu-harness/toolset/v1", "tools": {"bwrap": {"path": '
                              b'"/x"}}}')))
def test_manifest_of_any_bytes(workdir, raw):
    path = workdir / "toolset-raw.json"
    path.write_bytes(raw)
    loaded = loads_or_fails_cleanly(lambda: toolset.load_manifest(path))
    if loaded is not None:
        assert_manifest_sane(loaded)


SCENARIO = st.fixed_dictionaries({
    "id": maybe(st.just("software/host/gl") | TEXT), "path": maybe(st.just("software")),
    "outcome": maybe(st.sampled_from(["Pass", "Fail", "ExpectedFail", "Flake", "Skip", "Passed"])),
    "reason": maybe(TEXT),
}, optional={
    "wall_s": NUMBER, "attempts": NUMBER, "checks": lists(tables(st.sampled_from(["name", "ok",
                                                                                  "detail"]),
                                                                 JSON)),
    "logs": tables(TEXT, maybe(TEXT)), "phases_s": tables(TEXT, NUMBER), "launcher": JSON,
             "fps": JSON,
    "image": maybe(TEXT), "log_tail": maybe(TEXT), "renderer": JSON, "failure_kind": JSON,
             "result_dir": JSON,
})
DOCUMENT = st.fixed_dictionaries({
    "scenarios": lists(maybe(SCENARIO), 3), "wall_s": NUMBER, "summary": tables(TEXT, NUMBER),
    "toolset": maybe(st.fixed_dictionaries({"tools": tables(TEXT, JSON)},
                                           optional={"source": JSON})),
}, optional={
    "matrix": JSON, "started": JSON,
    "host": maybe(st.fixed_dictionaries({}, optional={"kernel": JSON,
                                                      "render_nodes": lists(TEXT)})),
})


@FUZZ
@given(document=maybe(DOCUMENT))
def test_results_that_read_accepts_render(workdir, document):
    path = workdir / "results.json"
    path.write_text(json.dumps(document))
    accepted = loads_or_fails_cleanly(lambda: results.read(path))
    if accepted is not None:
        xml = junit.render(records.parse(accepted))
        page = html.render(records.parse(accepted))
        xml.encode("utf-8"), page.encode("utf-8")  # what write_text does with them
        assert len(accepted["scenarios"]) == xml.count("<testcase ") == page.count('<tr class="')


@FUZZ
@given(raw=file_bytes(st.just(b'{"scenarios": [{"id": "a", "path": "p", "outcome": "Pass", '
                              b'"reason": "r"}], '
                               b'"wall_s": 1, "summary": {}, "toolset": {"tools": {}}}')))
def test_results_of_any_bytes(workdir, raw):
    path = workdir / "results-raw.json"
    path.write_bytes(raw)
    accepted = loads_or_fails_cleanly(lambda: results.read(path))
    if accepted is not None:
        junit.render(records.parse(accepted)).encode("utf-8")
        html.render(records.parse(accepted)).encode("utf-8")


SRI = "sha256-" + "A" * 43 + "="
PIN = st.fixed_dictionaries({}, optional={
    "fetcher": maybe(st.sampled_from(["git", "url", "svn"])), "url": maybe(TEXT),
    "hash": maybe(st.sampled_from([SRI, SRI + "\n", "md5-x"]) | TEXT), "version": maybe(TEXT),
                                          "rev": maybe(TEXT),
    "tag_prefix": maybe(TEXT), "source": maybe(TEXT),
    "url_template": maybe(st.sampled_from(["u/{version}", "{version}{x}", "{version}{0}", "{",
                                           "{version!r}"]) | TEXT),
    "colour": JSON,
})


@FUZZ
@given(data=maybe(PIN))
def test_pin_parse_of_any_tree(data):
    pin = loads_or_fails_cleanly(lambda: pins.parse("thing", data, "nix/pins/thing.json"))
    if pin is not None:
        assert pin.fetcher in pins.FETCHERS and pins.SRI_SHA256.match(pin.hash)
        assert all(bad_character(value) is None for value in vars(pin).values() if isinstance(value,
                                                                                              str))
        if pin.url_template:
            pin.url_template.format(version="1.2")
        assert json.loads(pin.to_json())


@FUZZ
@given(raw=file_bytes(st.just(('{"fetcher": "url", "url": "u", "hash": "%s", "version": "1"}'
                               % SRI).encode())))
def test_pin_load_of_any_bytes(workdir, raw):
    path = workdir / "thing.json"
    path.write_bytes(raw)
    pin = loads_or_fails_cleanly(lambda: pins.load(path))
    assert pin is None or pin.name == "thing"


# One change to a valid document: every node of it, in turn, replaced by something nasty, or a
# table key renamed. Each example probes one field's validation in isolation.

WILD = NASTY_TEXT | st.sampled_from([0, -1, 1e300, 10 ** 400, math.nan, math.inf, -math.inf, True,
                                     None, [], {},
                                     ["x"], {"a": 1}]) | JSON
ODD_NUMBERS = st.sampled_from([0, -1, 256, 1.5, 1e300, 10 ** 400, math.nan, math.inf, -math.inf,
                               True])
# a nasty value of the same type, half the time
LIKE = {str: NASTY_TEXT, int: ODD_NUMBERS, float: ODD_NUMBERS}


def places(tree, trail=()):
    """The trail (keys and indexes) of every node of a JSON tree, the root's included."""
    yield trail
    children = (tree.items() if isinstance(tree, dict)
                else enumerate(tree) if isinstance(tree, list) else ())
    for key, child in children:
        yield from places(child, trail + (key,))


def changed(tree, trail, change):
    if not trail:
        return change(None, tree)
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    if len(trail) == 1:
        return change(copy, trail[0])
    copy[trail[0]] = changed(tree[trail[0]], trail[1:], change)
    return copy


@st.composite
def one_change(draw, base):
    trail = draw(st.sampled_from(list(places(base))))
    parent = base
    for key in trail[:-1]:
        parent = parent[key]
    if trail and isinstance(parent, dict) and draw(st.booleans()):
        new_key = draw(st.sampled_from(["1X", "a/b", "", "x y", "\n"]) | TEXT)

        def rename(table, key):
            table[new_key] = table.pop(key)
            return table
        return changed(base, trail, rename)
    original = parent[trail[-1]] if trail else base
    value = draw(LIKE[type(original)] | WILD if type(original) in LIKE else WILD)

    def replace(container, key):
        if container is None:
            return value
        container[key] = value
        return container
    return changed(base, trail, replace)


def valid_matrix(workdir) -> dict:
    settings_all = {"timeout_s": 60, "tolerance": {"channel": 16, "fraction": 0.01},
                    "env": {"A_B": "1"},
                    "probe_args": ["--frames", "2"], "kernel_args": ['a="b c"'], "golden": "gl"}
    return {
        "matrix": {"paths": ["software", "vtest-virgl", "sandbox-dri"], "runtimes": ["host", "deb"],
                   "probes": ["gl"],
                   "exclude": [{"path": "sandbox-dri", "runtime": "deb"}]},
        "runtimes": {"deb": {"kind": "rootfs", "root": str(workdir / "rootfs"),
                             "description": "a root"}},
        "defaults": settings_all,
        "override": [{"match": "vtest-*", "expect": "fail", "reason": "old Mesa", **settings_all}],
    }


def test_the_valid_documents_load(workdir):
    assert len(matrix.expand(valid_matrix(workdir), "m.toml").scenarios) == 4
    path = workdir / "valid.json"
    path.write_text(json.dumps(valid_manifest(workdir)))
    assert toolset.load_manifest(path).found("bwrap")
    path.write_text(json.dumps(VALID_RESULTS))
    assert results.read(path) == VALID_RESULTS
    assert pins.parse("thing", VALID_PIN, "thing.json").url_template == "https://x/{version}.tar"


@FUZZ
@given(data=st.data())
def test_matrix_with_one_change(workdir, data):
    declaration = data.draw(one_change(valid_matrix(workdir)))
    loaded = loads_or_fails_cleanly(lambda: matrix.expand(declaration, "m.toml"))
    for scenario in loaded.scenarios if loaded else []:
        assert_sane(scenario)


def valid_manifest(workdir) -> dict:
    return {"schema": toolset.SCHEMA, "source": "nix", "render_nodes": [],
            "tools": {"bwrap": {"path": str(workdir / "prog"), "version": "0.8.0", "extra": {}},
                      "kernel": {"path": str(workdir / "a-file"), "version": "6.1",
                                 "extra": {"modules_dir": str(workdir)}},
                      "mesa": {"path": str(workdir), "version": "25.0",
                               "extra": {"dri_dirs": [str(workdir)], "libEGL": "/x/libEGL.so.1"}}}}


@FUZZ
@given(data=st.data())
def test_manifest_with_one_change(workdir, data):
    path = workdir / "toolset-changed.json"
    path.write_text(json.dumps(data.draw(one_change(valid_manifest(workdir)))))
    loaded = loads_or_fails_cleanly(lambda: toolset.load_manifest(path))
    if loaded is not None:
        assert_manifest_sane(loaded)


VALID_RESULTS = {
    "schema": results.SCHEMA, "matrix": "m.toml", "started": "2026-01-01T00:00:00+00:00",
                 "wall_s": 1.5,
    "host": {"kernel": "6.1", "machine": "x86_64", "render_nodes": ["/dev/dri/renderD128"]},
    "toolset": {"source": "discovery", "tools": {"bwrap": {"path": "/usr/bin/bwrap",
                                                           "version": "0.8.0"}}},
    "summary": {"Pass": 1, "Fail": 1},
    "scenarios": [
        {"id": "software/host/gl", "path": "software", "outcome": "Pass", "reason": "ok",
         "wall_s": 0.2,
         "attempts": 1, "renderer": "llvmpipe", "image": "s/probe.png", "golden": "s/golden.png",
         "checks": [{"name": "renderer", "ok": True, "detail": "ok"}],
         "logs": {"probe": "s/probe.log"},
         "phases_s": {"launch": 0.1}, "launcher": {"accel": "tcg", "accel_reason": "no kvm"},
         "fps": 30.0},
        {"id": "vtest-virgl/host/gl", "path": "vtest-virgl", "outcome": "Fail",
         "reason": "probe <crashed>",
         "wall_s": 0.3, "log_tail": "--- probe ---\nFatal", "failure_kind": "crash"},
    ],
}


@FUZZ
@given(data=st.data())
def test_results_with_one_change_read_and_render(workdir, data):
    path = workdir / "results-changed.json"
    path.write_text(json.dumps(data.draw(one_change(VALID_RESULTS))))
    accepted = loads_or_fails_cleanly(lambda: results.read(path))
    if accepted is not None:
        xml, page = junit.render(records.parse(accepted)), html.render(records.parse(accepted))
        xml.encode("utf-8"), page.encode("utf-8")
        assert xml.count("<testcase ") == len(accepted["scenarios"])


VALID_PIN = {"fetcher": "url", "url": "https://x/1.tar", "hash": SRI, "version": "1",
             "url_template": "https://x/{version}.tar", "source": "seeded"}


@FUZZ
@given(data=st.data())
def test_pin_with_one_change(data):
    changed_pin = data.draw(one_change(VALID_PIN))
    pin = loads_or_fails_cleanly(lambda: pins.parse("thing", changed_pin, "nix/pins/thing.json"))
    if pin is not None:
        assert all(bad_character(value) is None for value in vars(pin).values() if isinstance(value,
                                                                                              str))
        if pin.url_template:
            pin.url_template.format(version="1.2")


# The same, exhaustively: every node of each valid document replaced by each of a few values
# chosen to break one rule each, and every table key renamed to a few bad names.

def sweep_values(workdir) -> list:
    return ["", " ", "a\nb", "nul\x00", "\ud800", "x" * 1000, "/nonexistent",
            str(workdir / "a-file"), "rel/path",
            "a b", 'a"b', "../..", "a/b", "1X", "{version}{x}", 0, -1, 256, 1.5, 1e300, 10 ** 400,
            math.nan,
            math.inf, True, None, [], {}, ["x"], {"a": 1}]


SWEEP_KEYS = ["1X", "a/b", "\n", "x y", "", "A-B", "k" * 500]


def every_one_change(base, workdir):
    values = sweep_values(workdir)
    for trail in places(base):
        for value in values:
            yield changed(base, trail, lambda container, key, value=value: value
                          if container is None else
                          {**container, key: value} if isinstance(container, dict) else
                          container[:key] + [value] + container[key + 1:])
        parent = base
        for key in trail[:-1]:
            parent = parent[key]
        if trail and isinstance(parent, dict):
            for new_key in SWEEP_KEYS:
                yield changed(base, trail, lambda table, key, new_key=new_key: {(new_key
                                                                                 if k == key
                                                                                 else k): v
                                                                                 for k,
                                                                                v in table.items()})


def test_sweep_matrix(workdir):
    for declaration in every_one_change(valid_matrix(workdir), workdir):
        loaded = loads_or_fails_cleanly(lambda declaration=declaration: matrix.expand(declaration,
                                                                                      "m.toml"))
        for scenario in loaded.scenarios if loaded else []:
            assert_sane(scenario)


def test_sweep_manifest(workdir):
    path = workdir / "toolset-sweep.json"
    for manifest in every_one_change(valid_manifest(workdir), workdir):
        path.write_text(json.dumps(manifest))
        loaded = loads_or_fails_cleanly(lambda: toolset.load_manifest(path))
        if loaded is not None:
            assert_manifest_sane(loaded)


def test_sweep_results(workdir):
    path = workdir / "results-sweep.json"
    for document in every_one_change(VALID_RESULTS, workdir):
        path.write_text(json.dumps(document))
        accepted = loads_or_fails_cleanly(lambda: results.read(path))
        if accepted is not None:
            (junit.render(records.parse(accepted)).encode("utf-8"),
             html.render(records.parse(accepted)).encode("utf-8"))


def test_sweep_pin(workdir):
    for data in every_one_change(VALID_PIN, workdir):
        pin = loads_or_fails_cleanly(lambda data=data: pins.parse("thing", data,
                                                                  "nix/pins/thing.json"))
        if pin is not None:
            assert all(bad_character(value) is None for value in vars(pin).values()
                       if isinstance(value, str))
            if pin.url_template:
                pin.url_template.format(version="1.2")
