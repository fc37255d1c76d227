"""The ``tlexplorer`` command: demo, train, analyze, serve, info.

Heavy modules are imported inside each command so ``tlexplorer --help`` answers at once. Errors users
can cause (``TLXError``) print one line and exit with status 2; nothing half-written is left behind
because every writer below writes to a temporary name and renames.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .errors import TLXError


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad value as one line (plus the hint to use --help)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port must be ≤ 65535, got {text!r}")
    return value


# ----------------------------------------------------------------------------------------- commands
def cmd_info(args) -> int:
    import platform

    import torch

    from . import __version__
    from .config import resolve_device, settings

    s = settings()
    device = resolve_device(args.device)
    print(f"tlexplorer {__version__}")
    print(f"python      {platform.python_version()} ({sys.executable})")
    for name in ("torch", "torchvision", "captum", "sklearn", "polars", "openTSNE", "panel",
                 "holoviews", "bokeh", "datashader"):
        try:
            module = __import__(name)
            print(f"{name:<11} {getattr(module, '__version__', '?')}")
        except ImportError:
            print(f"{name:<11} not installed")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"device      {device} (GPU: {gpu}; torch threads: {torch.get_num_threads()})")
    print(f"data dir    {s.data_dir}  (TLX_DATA_DIR)")
    print(f"runs dir    {s.runs_dir}  (TLX_RUNS_DIR)")
    return 0


def cmd_train(args) -> int:
    from .training import TrainOptions, load_train_config, train_transfer

    _allow_factories(args)

    if args.config:
        data_spec, model_spec, options = load_train_config(args.config)
        data = None
    else:
        from .scenarios import load_scenario

        data = load_scenario(args.scenario, seed=args.seed, per_class=args.per_class,
                             data_dir=args.data_dir)
        data_spec, model_spec = data.spec, {"name": "digits-alexnet", "num_classes": len(data.classes)}
        options = TrainOptions(seed=args.seed)
    overrides = {k: v for k, v in (("epochs_source", args.epochs_source),
                                   ("epochs_target", args.epochs_target),
                                   ("device", args.device)) if v is not None}
    options = dataclasses.replace(options, **overrides) if overrides else options
    if data is None:
        from .datasets import load_transfer_data
        from .errors import DataError

        try:
            data = load_transfer_data(data_spec)
        except DataError as exc:  # name the file the bad entry is in
            raise type(exc)(f"{args.config}: {exc}") from exc
    result = train_transfer(data, model_spec, options, args.out, progress=not args.quiet,
                            overwrite=args.overwrite)
    from .demo import run_summary

    print(f"run written to {args.out}")
    print(run_summary(result.history))
    return 0


def cmd_analyze(args) -> int:
    from .cluster import cluster_client
    from .pipeline import AnalyzeOptions, analyze

    _allow_factories(args)

    options = AnalyzeOptions(
        layers=args.layers.split(",") if args.layers else None, n_steps=args.n_steps,
        per_class=args.per_class, device=args.device, batch_size=args.batch_size,
        max_chunk_mib=args.max_chunk_mib, feature_vis=args.feature_vis, include_source_on_source=args.source_on_source)
    with cluster_client(args.workers, args.scheduler) as client:  # None without either flag
        out = analyze(args.run_dir, args.out, options=options, progress=not args.quiet,
                      resume=not args.restart, client=client)
    if args.quiet:  # without progress, analyze prints no summary; the warnings still matter
        from .bundle import open_bundle

        for warning in open_bundle(out).manifest.get("warnings", []):
            print(f"warning: {warning}")
    print(f"analysis bundle written to {out}")
    return 0


def _allow_factories(args) -> None:
    """Make the factories named with --allow-factory (and TLX_ALLOW_FACTORIES) importable, now:
    a typo is one line at start-up, not a failure later."""
    from .models.factories import add_pythonpath, allow_factory, allow_from_environment

    add_pythonpath(args.pythonpath or ())
    allow_from_environment()
    for name in args.allow_factory or ():
        allow_factory(name)


def _warn_secret_on_command_line(args) -> None:
    from pathlib import Path as _Path

    if args.cookie_secret:
        print("warning: --cookie-secret is visible to every user of this machine (ps); use "
              "--cookie-secret-file or TLX_COOKIE_SECRET", file=sys.stderr)
    if args.basic_auth and not _Path(args.basic_auth).expanduser().is_file():
        print("warning: a password given with --basic-auth is visible to every user of this "
              "machine (ps); give a JSON file of users instead, or set TLX_BASIC_AUTH",
              file=sys.stderr)


def cmd_serve(args) -> int:
    from .app.serve import serve
    from .bundle import open_bundle

    for path in args.bundles:  # validate before starting the server: a clear error on the terminal
        open_bundle(path)
    _warn_secret_on_command_line(args)
    serve(args.bundles, port=args.port, address=args.address, num_threads=args.threads,
          num_procs=args.num_procs, basic_auth=args.basic_auth, cookie_secret=args.cookie_secret,
          cookie_secret_file=args.cookie_secret_file, allow_factories=args.allow_factory or (),
          pythonpath=args.pythonpath or (), allow_websocket_origin=args.allow_websocket_origin,
          show=args.show, use_xheaders=args.use_xheaders)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, port=args.port, address=args.address, serve=not args.no_serve,
                    show=args.show, per_class=args.per_class, progress=not args.quiet)


# ------------------------------------------------------------------------------------------- parser
def _factory_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-factory", action="append", default=None, metavar="MODULE:FUNCTION",
                   help="a model factory this command may import (repeatable; also "
                        "TLX_ALLOW_FACTORIES): needed for runs and bundles of your own CNNs")
    p.add_argument("--pythonpath", action="append", default=None, metavar="DIR",
                   help="folder to import --allow-factory modules from (repeatable; also "
                        "TLX_PYTHONPATH)")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="tlexplorer",
        description="Explain and diagnose transfer learning between a source and a target network.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)

    p = sub.add_parser("demo", help="build the digits scenario, train, analyse and serve the dashboard",
                       description="Build the digits scenario (printed -> handwritten), train and "
                                   "fine-tune, analyse and serve the dashboard; each step reuses what "
                                   "an earlier run finished.")
    p.add_argument("--out", default="runs/digits", help="run directory (bundle goes to OUT/bundle)")
    p.add_argument("--port", type=_port, default=5006, help="port of the dashboard (default: 5006)")
    p.add_argument("--address", default=None, help="address to listen on (default: localhost)")
    p.add_argument("--per-class", type=_positive_int, default=1000, help="printed digits per class")
    p.add_argument("--no-serve", action="store_true", help="stop after the analysis")
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train the source model and fine-tune the target model")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scenario", default="digits", help="built-in scenario (default: digits)")
    group.add_argument("--config", type=Path, help="YAML/JSON file describing your domains and model")
    p.add_argument("--out", type=Path, default=Path("runs/digits"), help="run directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-class", type=_positive_int, default=1000, help="scenario images per class")
    p.add_argument("--data-dir", type=Path, default=None, help="scenario cache (TLX_DATA_DIR)")
    p.add_argument("--epochs-source", type=_positive_int, default=None)
    p.add_argument("--epochs-target", type=_positive_int, default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (TLX_DEVICE)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _factory_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("analyze", help="compute the analysis bundle of a training run")
    p.add_argument("run_dir", type=Path, help="run directory written by `tlexplorer train`")
    p.add_argument("--out", type=Path, default=None, help="bundle directory (default RUN_DIR/bundle)")
    p.add_argument("--layers", default=None, help="comma-separated layer names (default: all hidden)")
    p.add_argument("--n-steps", type=_positive_int, default=50, help="integration steps of conductance")
    p.add_argument("--per-class", type=_positive_int, default=None,
                   help="instances per class and domain to attribute (default: all)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--max-chunk-mib", type=_positive_int, default=None,
                   help="most MiB of hooked layer outputs per conductance pass (TLX_MAX_CHUNK_MIB; "
                        "default: a tenth of the memory free on the device)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (TLX_DEVICE)")
    p.add_argument("--feature-vis", action="store_true",
                   help="precompute feature visualizations of the important neurons (on a finished "
                        "bundle of the same options: only these are added)")
    p.add_argument("--source-on-source", action="store_true",
                   help="also attribute the source model on source data")
    p.add_argument("--restart", action="store_true",
                   help="recompute everything: ignore an interrupted run's work and a finished bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _factory_arguments(p)
    cluster = p.add_mutually_exclusive_group()  # docs/distributed.md; needs tlexplorer[distributed]
    cluster.add_argument("--workers", type=_positive_int, default=None,
                         help="compute the model passes on a local Dask cluster of N worker processes")
    cluster.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="compute the model passes on an existing Dask cluster (tcp://HOST:PORT)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("serve", help="serve the dashboard for one or more analysis bundles")
    p.add_argument("bundles", nargs="+", type=Path, help="analysis bundle directories")
    p.add_argument("--port", type=_port, default=5006)
    p.add_argument("--address", default=None, help="address to listen on (default: localhost)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="worker threads so sessions stay responsive while one computes")
    p.add_argument("--num-procs", type=_positive_int, default=1,
                   help="server processes sharing the port (Linux, macOS): pages of many users "
                        "are built in parallel; about one per core")
    p.add_argument("--basic-auth", default=None, metavar="FILE",
                   help="require a login: a JSON file of {user: password} (default: "
                        "TLX_BASIC_AUTH, a file or a password)")
    p.add_argument("--cookie-secret-file", default=None, metavar="FILE",
                   help="file holding the secret that signs login cookies (default: "
                        "TLX_COOKIE_SECRET; else random, and logins end with the server)")
    p.add_argument("--cookie-secret", default=None, help=argparse.SUPPRESS)  # visible in ps
    p.add_argument("--use-xheaders", action="store_true",
                   help="behind a proxy: trust its X-Forwarded-For/-Proto (client addresses for "
                        "the login delay, Secure cookies over TLS)")
    _factory_arguments(p)
    p.add_argument("--allow-websocket-origin", action="append", default=None,
                   help="host[:port] browsers may connect from (repeatable), when hosting")
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("info", help="versions, the device in use, where data and runs go")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_info)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except TLXError as exc:
        print(f"tlexplorer: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad values reaching library code (device names, options)
        print(f"tlexplorer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tlexplorer: interrupted; completed files were kept, nothing half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
