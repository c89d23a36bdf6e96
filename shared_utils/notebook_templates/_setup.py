# %%
# Set-up: find the repository (cloning it on Colab), install what is missing, report the runtime.
import sys
from pathlib import Path

REPO_URL = "https://github.com/OWNER/REPO.git"  # on Colab: the repository to clone
ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / "shared_utils").is_dir()), None)
if ROOT is None:
    import subprocess
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "repo"], check=True)
    ROOT = Path("repo").resolve()
sys.path.insert(0, str(ROOT))
from shared_utils import notebook_env  # noqa: E402

notebook_env.prepare(model=$model_literal)
