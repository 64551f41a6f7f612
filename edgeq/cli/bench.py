"""The typer adapter for ``edgeq bench``: parse options, call ``runner.bench``, print.

Kept thin on purpose (library first): everything testable lives in ``runner.bench``;
this module only turns CLI strings into typed keyword arguments and the report into
output -- results on stdout (table or ``--json``), progress and warnings on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def parse_threads(value: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; anything else is a usage error (exit 2)."""
    try:
        threads = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        threads = ()
    if not threads or min(threads) < 1:
        raise typer.BadParameter(f"expected a comma-separated list of positive integers, got {value!r}",
                                 param_hint="--threads")
    return threads


def bench_command(
    models: Annotated[list[Path], typer.Argument(
        help=".tflite model(s); several models are compared side by side (int8 vs float).", show_default=False,
        metavar="MODEL.tflite")],
    host: Annotated[list[str], typer.Option(
        "--host", "-H", help="[USER@]HOST[:PORT] or a ~/.ssh/config alias; repeat for parallel hosts; "
        "'local' runs the same benchmark in a local subprocess.", show_default=False, metavar="HOST")],
    user: Annotated[Optional[str], typer.Option("--user", "-u", help="SSH user (default: ssh config, or you).")] = None,
    port: Annotated[Optional[int], typer.Option("--port", "-p", help="SSH port (default: ssh config, or 22).")] = None,
    identity: Annotated[Optional[Path], typer.Option(
        "--identity", "-i", help="Private key file (ssh-agent and ssh config IdentityFile are used too).")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option(
        "--ssh-config", help="ssh config file (default: ~/.ssh/config).")] = None,
    known_hosts: Annotated[Optional[Path], typer.Option(
        "--known-hosts", help="known_hosts file (default: ~/.ssh/known_hosts).")] = None,
    accept_new_host_key: Annotated[bool, typer.Option(
        "--accept-new-host-key", help="Trust and record the key of a host not yet in known_hosts "
        "(OpenSSH accept-new). A changed key is always refused.")] = False,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed inferences per measurement.")] = 100,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed inferences before timing.")] = 10,
    threads: Annotated[str, typer.Option("--threads", help="Interpreter thread counts, e.g. 1,2,4.")] = "1",
    xnnpack: Annotated[bool, typer.Option("--xnnpack/--no-xnnpack", help="Use the XNNPACK delegate.")] = True,
    eval_data: Annotated[Optional[Path], typer.Option(
        "--eval-data", help=".npz with 'x' (and 'y' labels): accuracy and agreement measured on the device.")] = None,
    python: Annotated[Optional[str], typer.Option(
        "--python", help="Python on the device [default: python3; for --host local: edgeq's Python].")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", min=0.1, help="Seconds allowed to connect and authenticate to each host "
        "[default: ssh config ConnectTimeout, else 10].")] = None,
    keep_remote: Annotated[bool, typer.Option(
        "--keep-remote", help="Keep the remote temp dir (for debugging).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a versioned JSON document on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Benchmark models on edge Linux devices over SSH: latency, memory, outputs, accuracy."""
    from edgeq.remote.report import print_report
    from edgeq.remote.runner import bench
    from edgeq.console import out, print_json, warn
    from edgeq.context import run_context
    from edgeq.text import one_line

    run_context().note_debug(debug)
    report = bench(
        models, hosts=host, user=user, port=port, identity=identity, ssh_config=ssh_config,
        known_hosts=known_hosts, accept_new_host_key=accept_new_host_key, runs=runs, warmup=warmup,
        threads=parse_threads(threads), xnnpack=xnnpack, eval_data=eval_data, python=python,
        connect_timeout=timeout, keep_remote=keep_remote, progress=True,
    )
    for result in report.mismatches:
        how = "in shape" if result.output_max_abs_diff is None else f"by up to {result.output_max_abs_diff:g}"
        warn(f"{one_line(result.host)}: the output of {one_line(result.model, 1000)} (threads={result.threads}) for a "
             f"fixed input differs {how} from local LiteRT with the same settings")
    if json_output:
        print_json(report.to_dict())
    else:
        print_report(report, out)
