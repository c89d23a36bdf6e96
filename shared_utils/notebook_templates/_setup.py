# %%
# Set-up: where the package is not installed (Colab, or a Python without `make setup`), clone the
# repository and install it; then install what else is missing and report the runtime.
import importlib.util

REPO_URL = "https://github.com/OWNER/REPO.git"  # on Colab: the repository to clone
if importlib.util.find_spec("shared_utils") is None:
    import site
    import subprocess
    import sys

    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "repo"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--editable", "repo"], check=True)
    site.addsitedir(site.getsitepackages()[0])  # activate the fresh install in this running kernel
from shared_utils import notebook_env  # noqa: E402

notebook_env.prepare(model=$model_literal)
