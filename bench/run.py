"""Side-by-side benchmark of uzel and Synapse (issue 9): ``make bench`` or

    .venv/bin/python -m bench.run [--engine sqlite|postgres] [--scale small|full]
                                  [--servers uzel,synapse] [--scenarios key,key] [--json PATH]

Starts a fresh server of each kind on loopback (bench/servers.py), runs every scenario
(bench/scenarios.py) against each, alternating which server goes first, and prints one table
(scenario | uzel | synapse | ratio, ratio = how many times better uzel is) followed by the details
(count, errors, ops/s, p50/p95/p99 per server). ``--json`` writes the same numbers as JSON.
A scenario whose route a server lacks shows "n/a (404)" for that server; a scenario that fails shows
"error" and the run goes on.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import traceback

from bench import servers as srv
from bench.load import EndpointMissing, Matrix, client_kind, make_client
from bench.scenarios import ALL_SCENARIOS, MEMORY_ROWS, SCALES, Ctx, Row, Scenario

KNOWN_SERVERS = ("uzel", "synapse")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- one row's cell values ---------------------------------------------------------------------

def _status(result: dict | None) -> str:
    if result is None:
        return "missing"
    return result.get("status", "ok")


def primary_value(row: Row, result: dict | None) -> float | None:
    if _status(result) != "ok":
        return None
    if row.metric == "mb":
        return result.get("mb")
    return result.get(row.metric)


def ratio(row: Row, uzel: dict | None, synapse: dict | None) -> float | None:
    """How many times better uzel is: throughput uzel/synapse; latency and memory synapse/uzel."""
    u, s = primary_value(row, uzel), primary_value(row, synapse)
    if not u or not s:
        return None
    return u / s if row.metric == "ops_s" else s / u


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def cell(row: Row, result: dict | None) -> str:
    status = _status(result)
    if status != "ok":
        return status
    if row.metric == "mb":
        return f"{result['mb']:.0f} MB"
    if row.metric == "ops_s":
        text = f"{result['ops_s']:.1f}/s (p50 {_fmt_ms(result['p50_ms'])})"
    else:
        text = f"p50 {_fmt_ms(result['p50_ms'])}"
    if result.get("errors"):
        text += f" [{result['errors']} err]"
    return text


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows])


def summary_table(report: dict) -> str:
    names = report["meta"]["servers"]
    headers = ["scenario"] + names + (["ratio (uzel better by)"] if {"uzel", "synapse"} <= set(names) else [])
    rows = []
    for r in report["rows"]:
        row = Row(r["name"], r["metric"])
        line = [r["name"]] + [cell(row, r["results"].get(n)) for n in names]
        if len(headers) > len(names) + 1:
            line.append(f"{r['ratio']:.1f}x" if r.get("ratio") else "-")
        rows.append(line)
    return render_table(headers, rows)


def detail_table(report: dict) -> str:
    headers = ["scenario", "server", "count", "errors", "ops/s", "p50", "p95", "p99", "note"]
    rows = []
    for r in report["rows"]:
        if r["metric"] == "mb":
            continue
        for name in report["meta"]["servers"]:
            res = r["results"].get(name) or {}
            status = _status(res)
            if status != "ok":
                rows.append([r["name"], name, "-", "-", "-", "-", "-", "-", f"{status}: {res.get('note', '')}"[:90]])
                continue
            note = ""
            if res.get("error_kinds"):
                note = ", ".join(f"{k} x{v}" for k, v in res["error_kinds"].items())
            elif res.get("first_error"):
                note = res["first_error"]
            if res.get("cold_ms") is not None:
                note = (f"cold {_fmt_ms(res['cold_ms'])}; " + note).rstrip("; ")
            rows.append([r["name"], name, res.get("count", "-"), res.get("errors", "-"),
                         "-" if res.get("ops_s") is None else f"{res['ops_s']:.1f}",
                         _fmt_ms(res.get("p50_ms")), _fmt_ms(res.get("p95_ms")), _fmt_ms(res.get("p99_ms")),
                         note[:90]])
    return render_table(headers, rows)


# --- running -----------------------------------------------------------------------------------

def _scenario_timeout(scale_name: str) -> float:
    return 1500.0 if scale_name == "full" else 300.0


async def run_scenario(scenario: Scenario, server: srv.ServerProcess, matrix: Matrix, scale, run_tag: str) -> dict:
    """Run one scenario on one server; every row of it gets a result dict (status ok / n/a / error)."""
    rows = scenario.rows(scale)
    if not server.alive():
        return {r.name: {"status": "error", "note": "server is not running"} for r in rows}
    ctx = Ctx(matrix, scale, server.name, run_tag)
    try:
        results = await asyncio.wait_for(scenario.run(ctx), timeout=_scenario_timeout(scale.name))
    except EndpointMissing as e:
        return {r.name: {"status": f"n/a ({e.status})", "note": f"{e.method} {e.path}"} for r in rows}
    except asyncio.TimeoutError:
        return {r.name: {"status": "error", "note": f"scenario timed out after {_scenario_timeout(scale.name):.0f} s"}
                for r in rows}
    except Exception as e:  # noqa: BLE001 - a broken scenario must not end the run
        log(f"{scenario.key} on {server.name} failed: {e!r}\n{traceback.format_exc(limit=3)}")
        return {r.name: {"status": "error", "note": str(e)[:300]} for r in rows}
    out = {}
    for r in rows:
        res = results.get(r.name)
        if res is None:
            out[r.name] = {"status": "error", "note": "scenario produced no result"}
        elif res.get("count", 0) == 0 and res.get("errors", 0) > 0:
            out[r.name] = {**res, "status": "error", "note": res.get("first_error") or "every request failed"}
        else:
            out[r.name] = {**res, "status": "ok"}
    if not server.alive():
        for res in out.values():
            res["note"] = (res.get("note", "") + " server died during the scenario").strip()
    return out


def _mb(kb: int | None) -> dict:
    return {"status": "ok", "mb": round(kb / 1024, 1)} if kb else {"status": "error", "note": "process gone"}


async def run_all(args, scale, servers: list[srv.ServerProcess], scenarios: list[Scenario]) -> dict:
    rows: dict[str, dict] = {}
    order_rows: list[Row] = []
    for row in MEMORY_ROWS[:1]:
        order_rows.append(row)
        rows[row.name] = {"name": row.name, "metric": row.metric, "results": {}}
    for server in servers:
        rows[MEMORY_ROWS[0].name]["results"][server.name] = _mb(server.memory_kb().get("VmRSS"))

    matrices = {s.name: Matrix(make_client(s.base_url, max_connections=64, prefer=args.client)) for s in servers}
    run_tag = secrets.token_hex(3)
    try:
        for k, scenario in enumerate(scenarios):
            for row in scenario.rows(scale):
                order_rows.append(row)
                rows[row.name] = {"name": row.name, "metric": row.metric, "results": {}}
            order = servers if k % 2 == 0 else list(reversed(servers))
            for server in order:
                log(f"{scenario.key} on {server.name} ...")
                t0 = time.monotonic()
                results = await run_scenario(scenario, server, matrices[server.name], scale, run_tag)
                for name, res in results.items():
                    rows[name]["results"][server.name] = res
                brief = "; ".join(f"{n}: {cell(Row(n, rows[n]['metric']), res)}" for n, res in results.items())
                log(f"{scenario.key} on {server.name} done in {time.monotonic() - t0:.1f} s: {brief}")
                await asyncio.sleep(1.0)  # let the server settle before the next one is measured
    finally:
        for m in matrices.values():
            await m.http.close()

    for row in MEMORY_ROWS[1:]:
        order_rows.append(row)
        rows[row.name] = {"name": row.name, "metric": row.metric, "results": {}}
    for server in servers:
        mem = server.memory_kb()
        rows[MEMORY_ROWS[1].name]["results"][server.name] = _mb(mem.get("VmHWM"))
        rows[MEMORY_ROWS[2].name]["results"][server.name] = _mb(mem.get("VmRSS"))

    out = []
    for row in order_rows:
        r = rows[row.name]
        r["ratio"] = ratio(row, r["results"].get("uzel"), r["results"].get("synapse"))
        if r["ratio"] is not None:
            r["ratio"] = round(r["ratio"], 2)
        out.append(r)
    return {"rows": out}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--scale", choices=tuple(SCALES), default="small")
    p.add_argument("--servers", default="uzel,synapse", help="comma-separated: uzel,synapse")
    p.add_argument("--scenarios", default="", help="comma-separated scenario keys (default: all): "
                   + ",".join(s.key for s in ALL_SCENARIOS))
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--workdir", help="where server data goes (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, databases)")
    p.add_argument("--synapse-venv", help=f"Synapse venv (default $UZEL_SYNAPSE_VENV or {srv.DEFAULT_SYNAPSE_VENV})")
    p.add_argument("--client", choices=("aiohttp", "threads"), default=None,
                   help="HTTP client of the load generator (default: aiohttp when installed)")
    p.add_argument("--pin", action="store_true",
                   help="pin the load generator to CPU 0 and the servers to the other CPUs")
    args = p.parse_args(argv)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.server_list if s not in KNOWN_SERVERS]
    # Columns always read uzel | synapse; which one runs first alternates per scenario anyway.
    args.server_list = sorted(set(args.server_list) - set(bad), key=KNOWN_SERVERS.index) + bad
    if bad or not args.server_list:
        p.error(f"--servers: unknown {bad}; choose from {KNOWN_SERVERS}")
    keys = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    known = {s.key: s for s in ALL_SCENARIOS}
    if any(k not in known for k in keys):
        p.error(f"--scenarios: unknown {[k for k in keys if k not in known]}; choose from {list(known)}")
    args.scenario_list = [known[k] for k in keys] if keys else list(ALL_SCENARIOS)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    scale = SCALES[args.scale]
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="uzel-bench-")
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()
    provider = srv.DatabaseProvider(args.engine, workdir)
    servers: list[srv.ServerProcess] = []
    report: dict = {}
    server_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            log("--pin needs at least 2 CPUs; not pinning")
        else:
            os.sched_setaffinity(0, {cpus[0]})
            server_cpus = set(cpus[1:])
    try:
        venv = srv.ensure_synapse_venv(args.synapse_venv, log=log) if "synapse" in args.server_list else None
        provider.start()
        for name in args.server_list:
            db = provider.new_database(name)
            server = srv.UzelServer(workdir, db) if name == "uzel" else srv.SynapseServer(workdir, db, venv)
            server.cpus = server_cpus
            log(f"starting {name} ({args.engine}) ...")
            server.start()
            log(f"{name} {server.version} up at {server.base_url}, pid {server.pid}")
            servers.append(server)
        time.sleep(3.0)  # idle: let start-up work finish before the idle RSS is read
        report = asyncio.run(run_all(args, scale, servers, args.scenario_list))
    finally:
        for server in servers:
            server.stop()
        provider.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"kept {workdir}")

    report["meta"] = {
        "servers": [s.name for s in servers],
        "versions": {s.name: s.version for s in servers},
        "engine": args.engine,
        "scale": args.scale,
        "scale_params": scale.__dict__,
        "client": args.client or client_kind(),
        "pinned": bool(server_cpus),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print()
    print(f"uzel vs Synapse — engine {args.engine}, scale {args.scale}, "
          + ", ".join(f"{k} {v}" for k, v in report["meta"]["versions"].items())
          + f", {report['meta']['machine']['cpus']} CPUs, {report['meta']['wall_s']:.0f} s")
    print(summary_table(report))
    print()
    print(detail_table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
