"""The function policy, resolve then check: a stored "module:function" names one public
function defined in that module, and the policy applies to what was resolved."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from gigq_core import DisallowedFunctionError, InvalidJobError, Job
from gigq_core.execution import PermanentError, load_function
from gigq_core.jobs import REFUSED_PACKAGES, check_function_allowed, resolve_function
from tests import jobs


@pytest.fixture
def app() -> Iterator[types.ModuleType]:
    """A module `policyapp.jobs` with one job, a re-exported stdlib function, a class, a
    callable object and a private helper; removed again afterwards."""
    package = types.ModuleType("policyapp")
    package.__path__ = []
    module = types.ModuleType("policyapp.jobs")
    source = (
        "import os\n"
        "from os import system\n"
        "from shutil import rmtree\n"
        "def work(x):\n    return x\n"
        "def _helper():\n    return 1\n"
        "class Thing:\n    def __call__(self):\n        return 1\n"
        "thing = Thing()\n"
        "aliased = work\n"
    )
    exec(compile(source, "policyapp/jobs.py", "exec"), module.__dict__)
    sys.modules["policyapp"], sys.modules["policyapp.jobs"] = package, module
    yield module
    del sys.modules["policyapp"], sys.modules["policyapp.jobs"]


def test_a_public_function_of_its_own_module_resolves(app: types.ModuleType) -> None:
    assert resolve_function("policyapp.jobs:work") is app.work
    assert resolve_function("policyapp.jobs:work", ["policyapp.*"]) is app.work


def test_a_task_wrapper_resolves_to_its_function() -> None:
    assert resolve_function("tests.jobs:task_add") is jobs.task_add.__wrapped_task__


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("policyapp.jobs:os.system", "no dots after the colon"),
        ("policyapp.jobs:work.__globals__", "no dots after the colon"),
        ("policyapp.jobs:_helper", "private"),
        ("policyapp.jobs:__builtins__", "private"),
        ("policyapp.jobs:rmtree", "defined in shutil"),
        ("policyapp.jobs:system", "builtin_function_or_method, not a function"),
        ("policyapp.jobs:Thing", "is a type, not a function"),
        ("policyapp.jobs:thing", "is a Thing, not a function"),
        ("policyapp.jobs", "not 'module:function'"),
    ],
)
def test_what_is_not_a_public_function_of_the_module_is_refused(
    app: types.ModuleType, path: str, says: str
) -> None:
    with pytest.raises(DisallowedFunctionError, match="not allowed") as err:
        resolve_function(path)
    assert says in str(err.value)


def test_an_alias_of_a_function_in_the_same_module_is_the_function(
    app: types.ModuleType,
) -> None:
    assert resolve_function("policyapp.jobs:aliased") is app.work


@pytest.mark.parametrize(
    "path",
    [
        "setuptools._distutils.spawn:spawn",
        "pip._internal.utils.subprocess:call_subprocess",
        "_distutils_hack:do_override",
        "pkg_resources:require",
        "gigq_cli.main:main",
        "gigq_core.worker:run_worker",
        "gigq:main",
        "gigq_notify:test",
        "gigq_postgres.storage:connect",
        "os:system",
        "posix:system",
        "builtins:eval",
        "sh:run",
        "click.termui:edit",  # runs an editor command line
        "pluggy._hooks:varnames",
        "tabulate:tabulate",
    ],
)
def test_the_default_refuses_gigq_packaging_tools_and_process_runners(path: str) -> None:
    with pytest.raises(DisallowedFunctionError, match="not allowed"):
        check_function_allowed(path)


def test_refused_packages_are_top_level_names() -> None:
    assert all(name.isidentifier() and "." not in name for name in REFUSED_PACKAGES)


@pytest.mark.parametrize(
    ("module", "pattern", "allowed"),
    [
        ("myapp.jobs", "myapp.*", True),
        ("myapp.jobs.mail", "myapp.*", True),  # "*" crosses dots
        ("myapp", "myapp.*", False),
        ("myapp", "myapp", True),
        ("myappx.jobs", "myapp.*", False),
        ("MyApp.jobs", "myapp.*", False),  # case-sensitive
        ("__main__", "myapp.*", False),
        ("__main__", "__main__", True),
    ],
)
def test_allowed_modules_patterns(module: str, pattern: str, allowed: bool) -> None:
    path = f"{module}:work"
    if allowed:
        check_function_allowed(path, [pattern])
    else:
        with pytest.raises(DisallowedFunctionError, match="outside allowed_modules"):
            check_function_allowed(path, [pattern])


def test_an_allow_list_never_lets_in_what_is_always_refused() -> None:
    with pytest.raises(DisallowedFunctionError, match="never"):
        check_function_allowed("os:system", ["*"])
    with pytest.raises(DisallowedFunctionError, match="never"):
        check_function_allowed("gigq_cli.main:main", ["gigq_cli.*"])


def test_main_targets_obey_the_policy_and_can_be_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = types.ModuleType("__main__")
    exec("def job():\n    return 7\nfrom shutil import rmtree\n", main.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert resolve_function("__main__:job")() == 7
    with pytest.raises(DisallowedFunctionError, match="defined in shutil"):
        resolve_function("__main__:rmtree")
    with pytest.raises(DisallowedFunctionError, match="outside allowed_modules"):
        resolve_function("__main__:job", ["myapp.*"])
    with pytest.raises(DisallowedFunctionError, match="the gigq command"):
        resolve_function("__main__:job", main_allowed=False)


def test_the_original_dotted_form_keeps_working() -> None:
    job = Job("add", "tests.jobs.add", params={"a": 1, "b": 2})
    assert job.function_path == "tests.jobs:add"
    assert load_function(job.function_path, ())(a=1, b=2) == 3


@pytest.mark.parametrize("path", ["tests.jobs:_private", "tests.jobs._private"])
def test_a_private_function_is_refused_at_build(path: str) -> None:
    with pytest.raises(InvalidJobError, match="private"):
        Job("x", path)


def test_a_worker_reports_a_refused_function_as_a_permanent_error(
    app: types.ModuleType,
) -> None:
    with pytest.raises(PermanentError, match="not allowed"):
        load_function("policyapp.jobs:os.system", ())
    with pytest.raises(PermanentError, match="outside allowed_modules"):
        load_function("tests.jobs:add", ["policyapp.*"])
