"""The notebooks' own tooling, for maintainers (``python -m ctlib.notebook ...``, or
``python -m ctlib.ops.notebooks ...``): one module per subcommand.

* :mod:`~ctlib.ops.notebooks.run` -- run notebooks headless and time them;
* :mod:`~ctlib.ops.notebooks.strip` -- strip outputs before a commit, keeping nbval's checks;
* :mod:`~ctlib.ops.notebooks.student` -- the students' copies (no solutions, no outputs);
* :mod:`~ctlib.ops.notebooks.pages` -- static HTML pages, executed in quick mode;
* :mod:`~ctlib.ops.notebooks.colab` -- badges, set-up cells and the README's Colab lines.

docs/DEVELOPERS.md, *Notebook tools*, says more.
"""

from ctlib.ops.notebooks.colab import write_colab
from ctlib.ops.notebooks.pages import build_pages
from ctlib.ops.notebooks.run import run_notebooks
from ctlib.ops.notebooks.strip import strip_outputs
from ctlib.ops.notebooks.student import student_copies

__all__ = ["build_pages", "run_notebooks", "strip_outputs", "student_copies", "write_colab"]
