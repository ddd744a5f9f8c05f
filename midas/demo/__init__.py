"""`midas demo`: the whole pipeline on a local exchange, with a summary, example queries and charts.

    from midas.demo import DemoOptions, run_demo
    reports = run_demo(DemoOptions(data_dir=Path("demo-data"), seconds=120), Console())

Modules: plans (what each run collects from), runner (the stages), session (environment, Prefect
API, Ctrl-C, progress bars), prefect_server (a temporary Prefect server in its own session), flow
(the processing flow for explicit hours), progress (raw-file counts while collecting), summary (the
closing report), datadir (what `--fresh` may delete).
"""

from midas.demo.plans import DemoOptions, DemoPlan
from midas.demo.runner import run_demo
from midas.demo.summary import DemoReport

__all__ = ["DemoOptions", "DemoPlan", "DemoReport", "run_demo"]
