"""`fx init` and `fx deploy`: a project scaffolded, then built, uploaded and deployed."""

from __future__ import annotations

import argparse
from pathlib import Path

from fx.cli.common import EXIT_FAILED, EXIT_OK, OUTPUT, AddCommand, client, err, print_json
from fx.errors import InputError
from fx.paths import MANIFEST

DEFAULT_WAIT_S = 120.0  # beyond the controller's init timeout (30 s), so its verdict normally comes first


def cmd_init(args: argparse.Namespace) -> int:
    from fx import scaffold

    project = scaffold.init(args.name, Path(args.dir))
    print(f"created {project}/: handler.py, requirements.txt, fx.yaml")
    print(f"next: cd {project} && fx deploy")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from fx import deploy, sam, sam_deploy

    if not args.wait_timeout > 0:  # nor nan: `elapsed >= nan` is never true, the wait would never end
        raise InputError(f"--wait-timeout {args.wait_timeout:g}: give a number of seconds above 0")
    path = Path(args.file)
    with client(args) as fx:
        if sam.is_sam(path):  # an AWS SAM template: its functions, mapped (fx.sam says how)
            results, template = sam_deploy.deploy_template(fx, path, args.names, err, traffic=not args.no_traffic)
        else:
            results, template = deploy.deploy(fx, path, args.names, progress=err, traffic=not args.no_traffic), None
        if not args.no_wait:
            results = deploy.wait(fx, results, args.wait_timeout, progress=err)
            if template is not None:
                sam_deploy.finish(fx, template, results, err)
    if args.output == "json":
        print_json(results)
    else:
        for result in results:
            (err if result.state == "Failed" else print)(deploy.describe_result(result))
    if args.no_wait:
        return EXIT_OK
    for late in (r for r in results if r.state == "Pending"):
        err(
            f"{late.function}: version {late.version} still initialising after {args.wait_timeout:g} s;"
            f" it takes no traffic until it is ready (see `fx versions {late.function}`)"
        )
    return EXIT_OK if all(r.state == "Ready" for r in results) else EXIT_FAILED


def register(add: AddCommand) -> None:
    init = add("init", cmd_init, "scaffold a new function project", connects=False)
    init.add_argument("name", help="function name (DNS-1123: lower-case letters, digits, '-')")
    init.add_argument("--dir", default=".", help="the folder to create the project in")

    dep = add("deploy", cmd_deploy, "build, upload and deploy the functions of fx.yaml", OUTPUT)
    dep.add_argument(
        "-f",
        "--file",
        default=MANIFEST,
        help="the manifest (default fx.yaml), or an AWS SAM template (template.yaml)",
    )
    dep.add_argument("names", nargs="*", metavar="NAME", help="deploy only these functions")
    dep.add_argument(
        "--no-traffic",
        action="store_true",
        help="the new version gets no traffic: started warm, reachable only when pinned (NAME@N, an alias)",
    )
    dep.add_argument(
        "--no-wait",
        action="store_true",
        help="return once each version is created; the platform still moves traffic only after its init succeeds",
    )
    dep.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for each new version to initialise (default {DEFAULT_WAIT_S:g})",
    )
