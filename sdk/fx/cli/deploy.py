"""`fx init` and `fx deploy`: a project scaffolded, then built, uploaded and deployed."""

from __future__ import annotations

import argparse
from pathlib import Path

from fx import deploy, manifest, scaffold
from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, err, print_json


def cmd_init(args: argparse.Namespace) -> int:
    project = scaffold.init(args.name, Path(args.dir))
    print(f"created {project}/: handler.py, requirements.txt, fx.yaml")
    print(f"next: cd {project} && fx deploy")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    with client(args) as fx:
        results = deploy.deploy(fx, Path(args.file), args.names, progress=err, traffic=not args.no_traffic)
    if args.output == "json":
        print_json([r.model_dump(mode="json") for r in results])
    else:
        for result in results:
            print(deploy.describe_result(result))
    return EXIT_OK


def register(add: AddCommand) -> None:
    init = add("init", cmd_init, "scaffold a new function project", connects=False)
    init.add_argument("name", help="function name (DNS-1123: lower-case letters, digits, '-')")
    init.add_argument("--dir", default=".", help="the folder to create the project in")

    dep = add("deploy", cmd_deploy, "build, upload and deploy the functions of fx.yaml", OUTPUT)
    dep.add_argument("-f", "--file", default=manifest.MANIFEST, help="the manifest (default fx.yaml)")
    dep.add_argument("names", nargs="*", metavar="NAME", help="deploy only these functions")
    dep.add_argument(
        "--no-traffic",
        action="store_true",
        help="the new version gets no traffic: started warm, reachable only when pinned (NAME@N, an alias)",
    )
