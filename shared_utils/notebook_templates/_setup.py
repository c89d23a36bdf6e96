# %%
# Set-up. On Colab: clone this repository into the workspace (or update the clone there), install
# the pinned versions and move into this notebook's folder of the clone, so that every notebook of
# a model reads and writes the same folders. Elsewhere (`make setup`): report the runtime only.
import subprocess
import sys
from pathlib import Path

REPOSITORY = "$repository"  # Colab: the GitHub repository (owner/name) holding this project, e.g. your fork
WORKSPACE = "drive"  # Colab: "drive" keeps the clone and every output in Google Drive across sessions; "local": in /content, lost with the runtime
if "google.colab" in sys.modules:
    if REPOSITORY == "$unset":
        raise SystemExit("Set REPOSITORY in this cell to the GitHub repository holding this project (owner/name), "
                         "then run the cell again.")
    workspace = Path("/content")
    if WORKSPACE == "drive":
        from google.colab import drive

        drive.mount("/content/drive")
        workspace = Path("/content/drive/MyDrive")
    clone = workspace / REPOSITORY.split("/")[-1]
    if (clone / ".git").is_dir():
        if subprocess.run(["git", "-C", str(clone), "pull", "--ff-only"]).returncode:
            print(f"NOTE: could not update {clone}; running the code it holds")
    else:
        subprocess.run(["git", "clone", "--depth", "1", f"https://github.com/{REPOSITORY}.git", str(clone)], check=True)
    sys.path.insert(0, str(clone))
from shared_utils import notebook_env  # noqa: E402

notebook_env.prepare(model=$model_literal, folder="$folder")
