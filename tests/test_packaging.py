"""Packaging facts CI and users rely on."""
import re
import subprocess
import sys

from shared import REPO_ROOT


def test_data_pipeline_imports_without_torch():
    """Every data_pipeline module imports with torch made unimportable."""
    code = (
        "import sys, importlib, pkgutil\n"
        "sys.modules['torch'] = None\n"
        "import data_pipeline\n"
        "walk = pkgutil.walk_packages(data_pipeline.__path__, 'data_pipeline.')\n"
        "names = [m.name for m in walk]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "assert 'uni_fold' not in sys.modules, 'data_pipeline imported uni_fold'\n"
        "print(len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 1


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_cmds = [line for b in blocks for line in b.splitlines() if "pytest" in line]
    assert len(test_cmds) == 1, test_cmds
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert test_cmds[0].strip() in ci.splitlines()
