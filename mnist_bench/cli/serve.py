"""`mnist-bench export`, `export-bench`, `serve` and `serve-load`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from . import _common
from ._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CliError,
    _add_data_flag,
    _err,
    _start_tensorflow,
    _update_table,
)


def _cmd_export(args: argparse.Namespace) -> int:
    from .._io import read_json

    results_file = Path(args.results)
    if args.report:
        if not args.readme:
            raise CliError("--report needs --readme FILE")
    else:
        if not args.model or not args.format:
            raise CliError("give MODEL and --format (or --report --readme FILE)")
        _export_and_record(args, results_file)
    if args.readme:
        from ..export import EXPORT_TABLE_MARKERS, export_table

        table = export_table(read_json(results_file))
        _update_table(args.readme, EXPORT_TABLE_MARKERS, table, "export table")
    return EXIT_OK


def _export_and_record(args: argparse.Namespace, results_file: Path) -> None:
    data = _common._load_data(args.data)
    _start_tensorflow()
    from ..evaluation import evaluate
    from ..export import (
        DEFAULT_NAMES,
        FORMATS,
        export_model,
        export_record,
        load_predictor,
        merge_export_results,
    )
    from ..models import load_model

    formats = list(FORMATS) if args.format == "all" else [args.format]
    model = load_model(args.model)
    keras_report = evaluate(model, data)
    print(f"keras: test accuracy {keras_report.accuracy:.4%} ({keras_report.n_errors} errors)")
    records = []
    for fmt in formats:
        out = Path(args.out) / DEFAULT_NAMES[fmt] if args.format == "all" else Path(args.out)
        export_model(model, fmt, out, representative_images=data.x_train)
        report = evaluate(load_predictor(out), data)
        records.append(export_record(fmt, out, report.accuracy, report.n_errors, args.model))
        print(
            f"{fmt}: wrote {out}: test accuracy {report.accuracy:.4%} ({report.n_errors} "
            f"errors), {report.accuracy - keras_report.accuracy:+.4%} vs keras"
        )
    content = merge_export_results(results_file, records, keras_report.accuracy)
    if "int8_loss_vs_float32" in content:
        verdict = "within" if content["int8_within_limit"] else "OVER"
        print(
            f"int8 loses {content['int8_loss_vs_float32']:.4%} vs float32 LiteRT: {verdict} "
            f"the {content['int8_max_loss']:.2%} limit"
        )
    print(f"wrote {results_file}")


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    from ..export import FORMATS

    p = sub.add_parser(
        "export",
        help="export a model to SavedModel / LiteRT / LiteRT int8 and record its test accuracy",
        description="Export MODEL (Keras 3 model.export, then TFLiteConverter.from_saved_model), "
        "measure the exported file's accuracy on the 10k test images and record it in "
        "--results (other formats' records are kept). litert-int8 is calibrated on 300 "
        "training images (seed 0). --format all writes every format into the folder --out.",
    )
    p.add_argument("model", nargs="?", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument(
        "--format",
        choices=[*FORMATS, "all"],
        default=None,
        help="format, or all three (required unless --report)",
    )
    p.add_argument(
        "--out",
        default="results/export",
        help="file or folder to write; with --format all, a folder (default: results/export)",
    )
    p.add_argument(
        "--results",
        default="results/export.json",
        help="accuracy record to update (default: results/export.json)",
    )
    _add_data_flag(p)
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the export-table markers in this file (default: none)",
    )
    p.add_argument("--report", action="store_true", help="export nothing: only regenerate --readme")
    p.set_defaults(func=_cmd_export)


def _cmd_export_bench(args: argparse.Namespace) -> int:
    from .._io import read_json, write_json

    out = Path(args.out)
    if not args.report:
        if not args.model:
            raise CliError("give MODEL (or --report --readme FILE)")
        data = _common._load_data(args.data)
        _start_tensorflow()
        from ..export import DEFAULT_NAMES
        from ..export_bench import BATCH, ratios, run_inference_bench
        from ..models import load_model
        from ..preprocess import preprocess_images
        from ..provenance import provenance

        exports = {
            fmt: Path(args.exports) / name
            for fmt, name in DEFAULT_NAMES.items()
            if (Path(args.exports) / name).exists()
        }
        print(f"exported files found: {', '.join(map(str, exports.values())) or 'none'}")
        print(
            f"{'runtime':<28} {'threads':>7} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>8}", flush=True
        )

        def show(r: dict[str, Any]) -> None:
            threads = "-" if r["threads"] is None else str(r["threads"])
            print(
                f"{r['name']:<28} {threads:>7} {r['single_p50_ms']:>8.3f} "
                f"{r['single_p99_ms']:>8.3f} {r['batch_images_per_s']:>8.0f}",
                flush=True,
            )

        images = preprocess_images(data.x_test[:2000])
        load_before = os.getloadavg()[0]
        rows = run_inference_bench(load_model(args.model), exports, images, progress=show)
        content = {
            # Other processes' CPU use skews the times; recorded so a reader can tell.
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
            "rows": rows,
            "batch": BATCH,
            "ratios": ratios(rows),
            "model": str(args.model),
            "provenance": provenance(),
        }
        q = content["ratios"]
        print(
            f"fastest one image: {q['fastest_single']} p50 {q['fastest_single_p50_ms']:.3f} ms "
            f"({q['single_speedup_vs_package']:.1f}x mnist_bench.predict); fastest batched: "
            f"{q['fastest_batch']} ({q['batch_speedup_vs_model_predict']:.1f}x model.predict)"
        )
        print(f"wrote {write_json(out, content)}")
    elif not args.readme:
        raise CliError("--report needs --readme FILE")
    if args.readme:
        from ..export_bench import INFERENCE_TABLE_MARKERS, inference_table

        _update_table(
            args.readme, INFERENCE_TABLE_MARKERS, inference_table(read_json(out)), "inference table"
        )
    return EXIT_OK


def _add_export_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-bench",
        help="time one-image latency and batched throughput of every runtime, in one run",
        description="Keras model.predict, mnist_bench.predict, and the files `mnist-bench export "
        "--format all` wrote into --exports (SavedModel, LiteRT float32 and int8 at 1 and 2 "
        "threads): one image p50/p99 and batched images/s; prints them and writes --out.",
    )
    p.add_argument("model", nargs="?", help="the Keras model the files were exported from")
    p.add_argument(
        "--exports", default="results/export", help="exported files (default: results/export)"
    )
    p.add_argument(
        "--out", default="results/inference.json", help="(default: results/inference.json)"
    )
    _add_data_flag(p)
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the inference-table markers (default: none)",
    )
    p.add_argument("--report", action="store_true", help="measure nothing: only --readme")
    p.set_defaults(func=_cmd_export_bench)


def _cmd_serve(args: argparse.Namespace) -> int:
    if Path(args.model).suffix != ".tflite":
        _start_tensorflow()  # a Keras model is converted to LiteRT at start-up
    from ..serving import create_app, load_for_serving, serve

    predictor, info = load_for_serving(args.model, runtime=args.runtime)
    from ..model_card import card_line

    print(f"serving {args.model} ({info['runtime']}, sha256 {info['sha256'][:16]})", flush=True)
    print(f"model: {card_line(info)}", flush=True)
    print(f"open http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        serve(create_app(predictor.predict_proba, model_info=info), host=args.host, port=args.port)
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then re-raises Ctrl-C
        print("stopped")
    return EXIT_OK


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the draw-a-digit page and POST /predict over HTTP",
        description="Load MODEL once (a Keras model is converted to LiteRT float32 at start-up "
        "when ai-edge-litert is installed; a .tflite file is served as is) and serve GET / "
        "(draw a digit), POST /predict (PNG/JPEG or a JSON 28x28 array) and GET /healthz.",
    )
    p.add_argument("model", help="a .keras/.h5 file or folder, a .tflite file, a SavedModel")
    p.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument(
        "--runtime",
        choices=["auto", "keras"],
        default="auto",
        help="auto: LiteRT when installed, else Keras (default: auto)",
    )
    p.set_defaults(func=_cmd_serve)


def _print_serve_load(content: dict[str, Any]) -> None:
    load, malformed, q = content["load"], content["malformed"], content["sequential"]
    c = load["latency_ms"]
    print(
        f"{load['n_ok']} ok, {load['n_errors']} errors, {load['requests_per_s']:.0f} req/s, "
        f"p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms, in-server p50 "
        f"{load['server_latency_ms']['p50']:.3f} ms; served accuracy {load['served_accuracy']:.2%}"
    )
    if q is not None:
        print(
            f"then one client, {q['n_requests']} requests: p50 {q['latency_ms']['p50']:.2f} ms, "
            f"p99 {q['latency_ms']['p99']:.2f} ms, {q['n_errors']} errors"
        )
    print(
        f"malformed burst: {malformed['n_requests']} requests, {len(malformed['unexpected'])} "
        f"unexpected statuses; then a valid request: HTTP {content['after']}"
    )
    for line in [*load["errors"], *malformed["unexpected"]]:
        print(f"  {line}")


def _cmd_serve_load(args: argparse.Namespace) -> int:
    from .._io import read_json, write_json

    out = Path(args.out)
    if not args.report:
        if not args.model:
            raise CliError("give MODEL (or --report --readme FILE)")
        if args.requests < 1 or args.concurrency < 1:
            raise CliError("--requests and --concurrency must be >= 1")
        data = _common._load_data(args.data)
        from ..serving.load import load_test_passed, measure_serving

        print(
            f"starting `mnist-bench serve {args.model}` on 127.0.0.1, then {args.requests} "
            f"requests from {args.concurrency} clients",
            flush=True,
        )
        content = measure_serving(
            args.model,
            data.x_test[: args.requests],
            data.y_test[: args.requests],
            n_requests=args.requests,
            concurrency=args.concurrency,
        )
        _print_serve_load(content)
        print(f"wrote {write_json(out, content)}")
        if not load_test_passed(content):
            _err("the server did not pass the load test")
            return EXIT_CHECK_FAILED
    elif not args.readme:
        raise CliError("--report needs --readme FILE")
    if args.readme:
        from ..serving.load import SERVE_LOAD_TABLE_MARKERS, serve_load_table

        _update_table(
            args.readme,
            SERVE_LOAD_TABLE_MARKERS,
            serve_load_table(read_json(out)),
            "serve-load table",
        )
    return EXIT_OK


def _add_serve_load_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve-load",
        help="load-test `mnist-bench serve` on 127.0.0.1 and record latency and requests/s",
        description="Start `mnist-bench serve MODEL` in a child process on a free port, send "
        "--requests JSON requests (test images) from --concurrency keep-alive clients, then a "
        "burst of malformed requests and one valid request; write --out. Exit 1 on any error.",
    )
    p.add_argument("model", nargs="?", help="model to serve (as `mnist-bench serve` takes)")
    p.add_argument("--requests", type=int, default=2000, help="requests (default: 2000)")
    p.add_argument("--concurrency", type=int, default=16, help="clients (default: 16)")
    p.add_argument(
        "--out", default="results/serve_load.json", help="(default: results/serve_load.json)"
    )
    _add_data_flag(p)
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the serve-load-table markers (default: none)",
    )
    p.add_argument("--report", action="store_true", help="measure nothing: only --readme")
    p.set_defaults(func=_cmd_serve_load)
