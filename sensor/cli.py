"""Command line: `sensor replay` (capture files), `sensor capture` (live) and
`sensor collect` (a reference receiver for the network outputs)."""
import functools
import gc
import os
import signal
import sys

# Start-up (click, the sensor's modules) makes some 100k objects and no
# garbage: collecting while importing, and again over all of them at exit,
# costs a replay ~5 ms. main() freezes them out of the collector's sight.
gc.disable()

import click  # noqa: E402

from . import __version__  # noqa: E402


def _human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1000.0


class _Progress:
    """A one-line progress bar on stderr, only when it is a terminal."""

    def __init__(self):
        self.shown = False

    def __call__(self, reader):
        size = reader.file_size or 1
        frac = min(1.0, reader.file_pos / size)
        bar = "#" * int(frac * 30)
        sys.stderr.write("\r[%-30s] %3d%%  %s  %d packets" % (
            bar, frac * 100, os.path.basename(reader.path), reader.packets))
        sys.stderr.flush()
        self.shown = True

    def done(self):
        if self.shown:
            sys.stderr.write("\r" + " " * 79 + "\r")


def _summary(res, records):
    s = res.stats
    rate = s["packets"] / res.elapsed if res.elapsed else 0.0
    anomalies = sum(s["http_anomalies"].values())
    not_decoded = sum(v for k, v in s["packets_not_decoded"].items() if k != "ip_fragment_held")
    lines = ["sensor: %d packets (%s), %d flows, %d transactions, %d records, %d gaps, "
             "%d anomalies, %d packets not decoded in %.2f s (%.0f packets/s, %s/s)" % (
                 s["packets"], _human(s["bytes"]), s["flows"], s["transactions"], records,
                 s["gaps"], anomalies, not_decoded, res.elapsed, rate,
                 _human(s["bytes"] / res.elapsed if res.elapsed else 0))]
    detail = dict(s["http_anomalies"])
    detail.update(s["packets_not_decoded"])
    for k in ("flows_evicted", "flows_timed_out", "reassembly_overflows", "overlaps_with_different_data",
              "duplicates_dropped", "filtered_out"):
        if s[k]:
            detail[k] = s[k]
    if detail:
        lines.append("  " + ", ".join("%s %d" % kv for kv in sorted(detail.items())))
    e = s.get("enrichment")
    if e and (e["bodies_shaped"] or e["bodies_undecodable"] or e["bodies_shed"]):
        lines.append("  enrichment: %d bodies shaped (%d more from cache)" % (e["bodies_shaped"], e["shape_cache_hits"])
                     + "".join(", %d %s" % (e[k], what) for k, what in (
                         ("bodies_undecodable", "undecodable"), ("decompression_limits", "over the decompression limit"),
                         ("bodies_shed", "not shaped while behind")) if e[k]))
    return "\n".join(lines)


_SINK_OPTIONS = ("queue_policy", "queue_size", "spool_dir", "spool_max", "drain_timeout", "rotate_size",
                 "rotate_seconds")


def _output_options(policy):
    """-o/--output (repeatable) and the delivery options of a command; the
    latter reach it gathered in its `sink_opts` argument."""
    options = [
        click.option("-o", "--output", multiple=True, default=["-"], show_default=True,
                     help="Where records go (repeat for several): - (stdout), PATH or file:PATH (msgpack), "
                          "jsonl:PATH, tcp://HOST:PORT, unix:///PATH (msgpack stream), "
                          "fluent://HOST:PORT?tag=..&compress=gzip&shared_key=..&tls=1 (Fluent Forward), "
                          "nats://HOST:PORT/SUBJECT (JetStream), kafka://BROKER/TOPIC."),
        click.option("--queue-policy", type=click.Choice(["block", "drop"]), default=policy, show_default=True,
                     help="When a network output's queue is full: wait (nothing lost) or drop (counted)."),
        click.option("--queue-size", type=click.IntRange(1, None), default=100_000, show_default=True,
                     help="Records queued per network output."),
        click.option("--spool-dir", type=click.Path(file_okay=False), default=None,
                     help="Where network outputs spool while their collector is away (one directory per "
                          "output; default: sensor-spool-UID in the temp directory). The next start sends it first."),
        click.option("--spool-max", type=click.IntRange(1, None), default=1024, show_default=True,
                     help="MiB of spool per output; beyond it batches are dropped (counted)."),
        click.option("--drain-timeout", type=click.FloatRange(0, None), default=10.0, show_default=True,
                     help="Seconds to deliver what is queued at exit; the rest stays in the spool."),
        click.option("--rotate-size", type=click.IntRange(1, None), default=None,
                     help="File outputs: start a new file past this many MiB (finished files renamed "
                          "PATH-STARTTIME.ext)."),
        click.option("--rotate-seconds", type=click.FloatRange(1, None), default=None,
                     help="File outputs: start a new file after this many seconds."),
    ]

    def decorate(f):
        @functools.wraps(f)
        def command(**kw):
            o = {k: kw.pop(k) for k in _SINK_OPTIONS}
            kw["sink_opts"] = {"policy": o["queue_policy"], "queue_size": o["queue_size"],
                               "spool_dir": o["spool_dir"], "spool_max": o["spool_max"] << 20,
                               "drain_timeout": o["drain_timeout"], "rotate_bytes": (o["rotate_size"] or 0) << 20,
                               "rotate_seconds": o["rotate_seconds"] or 0}
            return f(**kw)
        for opt in reversed(options):
            command = opt(command)
        return command
    return decorate


def _open_outputs(outputs, fmt, sink_opts):
    from .sinks import OutputError, open_outputs
    try:
        return open_outputs(outputs, fmt, **sink_opts)
    except OutputError as e:
        raise click.BadParameter(str(e), param_hint="'-o' / '--output'")


def _sink_summary(writer):
    """One line of delivery counters per network output."""
    for line in writer.summaries():
        click.echo(line, err=True)


def _enrich_options(f):
    """The enrichment options of replay and capture."""
    options = [
        click.option("--enrich/--no-enrich", default=True, show_default=True,
                     help="Endpoint templates, masked path segments, auth, payload shape and sensitive data. "
                          "--no-enrich writes the core records alone, for traffic metadata at the highest rate: "
                          "url.path is then as sent, values in path segments included."),
        click.option("--body-cap", type=click.IntRange(0, 16384), default=64, show_default=True,
                     help="KiB of each request and response body read for payload shape and sensitive data "
                          "(JSON, forms, multipart, XML, GraphQL, gRPC); 0 = no bodies. Values never leave the "
                          "sensor."),
        click.option("--route-hints", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Endpoint hints file: '/post/{postId}' makes that position a parameter, '=/users/me' "
                          "keeps a literal path; hints win over the route learner."),
        click.option("--keep-examples", is_flag=True,
                     help="Opt-in: records also carry redacted examples of query, path and body string values "
                          "(letters -> x, digits -> 9; cards keep first 6 and last 4 digits). Formats leave the "
                          "sensor."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _record_stage(enrich, raw_targets, route_hints, keep_examples, shed_lag=None):
    """The record stage, with enrichment unless told not; a bad hints file is a one-line error."""
    from .records import RecordStage
    if not enrich:
        if route_hints or keep_examples:
            raise click.UsageError("--route-hints and --keep-examples need enrichment (no --no-enrich)")
        return RecordStage(raw_targets)
    from .enrich import Enricher
    try:
        return RecordStage(raw_targets, Enricher(route_hints, keep_examples=keep_examples, shed_lag=shed_lag))
    except (OSError, ValueError) as e:
        raise click.ClickException("route hints %s: %s" % (route_hints, e))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sensor")
def main():
    """Passive API traffic sensor: one record per HTTP transaction (HTTP/1,
    HTTP/2, gRPC; one per TLS connection), from capture files or live
    interfaces. Records carry names, types and sizes, never header, query or
    body values."""
    gc.freeze()
    gc.enable()


@main.command()
@_output_options("block")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["msgpack", "jsonl"]), default="msgpack",
              show_default=True, help="msgpack stream (for collectors) or JSON Lines (for humans, jq).")
@click.option("--raw-targets", is_flag=True,
              help="Also record the raw request-target with its query string (url.target). "
                   "Opt-in for analysts who already hold the capture: query values then leave the sensor.")
@click.option("--memory-budget", type=click.IntRange(16, None), default=256, show_default=True,
              help="MiB for flow state and reassembly; beyond it the oldest flows are evicted (counted).")
@click.option("--idle-timeout", type=click.FloatRange(1, None), default=300.0, show_default=True,
              help="Seconds of packet time after which a silent connection is closed.")
@click.option("--dedup-window", type=click.FloatRange(0, None), default=10.0, show_default=True,
              help="Milliseconds within which an identical frame is a mirror copy: dropped, counted (0 = off).")
@click.option("--bpf", default=None, help="Only packets matching this filter (libpcap syntax, as tcpdump's).")
@click.option("--tunnel-key/--no-tunnel-key", default=True, show_default=True,
              help="Tunnel ids (VXLAN/Geneve VNI, GRE key, ERSPAN session) join the connection key.")
@click.option("--vlan-key", is_flag=True, help="VLAN ids join the connection key too.")
@click.option("--h2-max-streams", type=click.IntRange(1, None), default=1024, show_default=True,
              help="Open HTTP/2 streams kept per connection; more are counted and not tracked.")
@click.option("--h2-max-header-block", type=click.IntRange(1024, None), default=256 << 10, show_default=True,
              help="Bytes of one HTTP/2 header block (HEADERS + CONTINUATION); larger blocks are dropped, counted.")
@_enrich_options
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def replay(files, output, fmt, raw_targets, memory_budget, idle_timeout, dedup_window, bpf, tunnel_key,
           vlan_key, h2_max_streams, h2_max_header_block, enrich, body_cap, route_hints, keep_examples, quiet,
           sink_opts):
    """Read pcap/pcapng captures (optionally gzip-compressed) and write one
    record per HTTP transaction.

    \b
    Examples:
      sensor replay capture.pcap --format jsonl | jq .
      sensor replay day1.pcap.gz day2.pcap.gz -o records.msgpack
    """
    from .pipeline import replay as run_replay

    stage = _record_stage(enrich, raw_targets, route_hints, keep_examples)
    writer = _open_outputs(output, fmt, sink_opts)
    # SIGTERM stops as Ctrl-C does: the outputs drain within --drain-timeout, the rest stays in their spools
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    progress = _Progress() if sys.stderr.isatty() and not quiet else None
    try:
        res = run_replay(files, writer, stage, progress=progress, bpf=bpf,
                         memory_budget=memory_budget << 20, idle_timeout=idle_timeout,
                         h2_max_streams=h2_max_streams, h2_max_header_block=h2_max_header_block,
                         dedup_window=dedup_window / 1000.0, tunnel_in_key=tunnel_key, vlan_in_key=vlan_key,
                         enrich=enrich, body_cap=body_cap << 10)
    except ValueError as e:                 # sensor.bpf.BpfError included
        raise click.ClickException(str(e))
    finally:
        writer.close()
        if progress:
            progress.done()
    for w in res.warnings:
        click.echo("sensor: warning: " + w, err=True)
    for e in res.errors:
        click.echo("sensor: error: " + e, err=True)
    if not quiet:
        click.echo(_summary(res, writer.count), err=True)
        _sink_summary(writer)
    if res.errors:
        sys.exit(1)


@main.command()
@_output_options("drop")
@click.option("-i", "--interface", "ifaces", multiple=True, required=True,
              help="Interface to capture on (repeat for several, e.g. both sides of a TAP).")
@click.option("--bpf", default=None, help="Capture filter, libpcap syntax (e.g. 'tcp port 80').")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sharing the traffic by flow hash (PACKET_FANOUT_HASH).")
@click.option("--format", "fmt", type=click.Choice(["msgpack", "jsonl"]), default="msgpack", show_default=True)
@click.option("--raw-targets", is_flag=True, help="Also record raw request-targets (query values leave the sensor).")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=262144, show_default=True)
@click.option("--ring-size", type=click.IntRange(2, 4096), default=64, show_default=True,
              help="MiB of kernel receive ring per interface and worker.")
@click.option("--no-promisc", is_flag=True, help="Do not put the interfaces in promiscuous mode.")
@click.option("--duration", type=click.FloatRange(0, None), default=None, help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(1, None), default=None, help="Stop after this many packets (one worker).")
@click.option("--user", default=None, help="Drop privileges to this user once the sockets are open.")
@click.option("--stats-interval", type=click.FloatRange(0.1, None), default=None,
              help="Seconds between `stats` records (packets, kernel drops, flows, gaps, records).")
@click.option("--memory-budget", type=click.IntRange(16, None), default=256, show_default=True,
              help="MiB for flow state per worker; beyond it the oldest flows are evicted (counted).")
@click.option("--idle-timeout", type=click.FloatRange(1, None), default=300.0, show_default=True)
@click.option("--dedup-window", type=click.FloatRange(0, None), default=10.0, show_default=True,
              help="Milliseconds within which an identical frame is a mirror copy: dropped, counted (0 = off).")
@click.option("--tunnel-key/--no-tunnel-key", default=True, show_default=True,
              help="Tunnel ids (VXLAN/Geneve VNI, GRE key, ERSPAN session) join the connection key.")
@click.option("--vlan-key", is_flag=True, help="VLAN ids join the connection key too.")
@_enrich_options
@click.option("--shed-lag", type=click.FloatRange(0, None), default=2.0, show_default=True,
              help="Seconds records may fall behind the packets before bodies of endpoints already shaped are "
                   "no longer shaped (flagged body_not_shaped, counted) until the lag halves; 0 = never.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def capture(ifaces, bpf, workers, output, fmt, raw_targets, snaplen, ring_size, no_promisc, duration,
            count, user, stats_interval, memory_budget, idle_timeout, dedup_window, tunnel_key, vlan_key,
            enrich, body_cap, route_hints, keep_examples, shed_lag, quiet, sink_opts):
    """Capture live from network interfaces (SPAN/mirror ports, veth, tunnels)
    and write one record per HTTP transaction. Stops on Ctrl-C or SIGTERM,
    writing the transactions still open as partial records; SIGHUP reopens
    the output file (log rotation).

    \b
    Examples:
      sensor capture -i eth1 --format jsonl
      sensor capture -i eth1 -i eth2 --workers 2 --bpf 'tcp' -o records.msgpack
    """
    from .capture import CaptureSetupError, capture as run_capture

    codes = None
    if bpf:
        # compiled for each interface's own link type, checked before the kernel sees it
        from ._core import BpfFilter, _iface_linktype
        from .bpf import compile_bpf
        try:
            codes = {name: compile_bpf(bpf, _iface_linktype(name), snaplen) for name in ifaces}
            for code in codes.values():
                BpfFilter(code)
        except (ValueError, CaptureSetupError) as e:     # sensor.bpf.BpfError included
            raise click.ClickException(str(e))
    stage = _record_stage(enrich, raw_targets, route_hints, keep_examples, shed_lag or None)
    writer = _open_outputs(output, fmt, sink_opts)
    opts = {"workers": workers, "snaplen": snaplen, "ring_mb": ring_size, "promisc": not no_promisc,
            "bpf": codes, "stats_interval": stats_interval}
    try:
        res = run_capture(list(ifaces), writer, stage, opts,
                          {"memory_budget": memory_budget << 20, "idle_timeout": idle_timeout,
                           "dedup_window": dedup_window / 1000.0, "tunnel_in_key": tunnel_key,
                           "vlan_in_key": vlan_key, "enrich": enrich, "body_cap": body_cap << 10},
                          duration=duration, count=count, user=user,
                          ready=lambda: click.echo("sensor: capturing on %s" % ", ".join(ifaces), err=True))
    except (CaptureSetupError, KeyError, PermissionError) as e:
        raise click.ClickException(str(e).strip("'\""))
    finally:
        writer.close()
    if not quiet:
        click.echo(_summary(res, writer.count), err=True)
        click.echo("  kernel: %d packets, %d dropped%s" % (
            res.kernel["packets"], res.kernel["drops"],
            "; %d workers" % len(res.workers) if res.workers else ""), err=True)
        _sink_summary(writer)
    for e in res.errors:
        click.echo("sensor: error: " + e, err=True)
    if res.errors:
        sys.exit(1)


@main.command()
@click.option("--listen", "listens", multiple=True, required=True,
              help="Where to accept records (repeat for several): fluent://HOST:PORT[?shared_key=K] "
                   "(Fluent Forward, acks), tcp://HOST:PORT or unix:///PATH (plain msgpack stream). "
                   "Port 0 picks a free port (printed).")
@click.option("-o", "--output", default="-", show_default=True, help="Where received records go: a file path, or -.")
@click.option("--format", "fmt", type=click.Choice(["msgpack", "jsonl"]), default="msgpack", show_default=True)
@click.option("--summary-interval", type=click.FloatRange(0.1, None), default=None,
              help="Seconds between live per-endpoint summaries on stderr (default: 5 when it is a terminal).")
@click.option("-q", "--quiet", is_flag=True, help="No final summary on stderr.")
def collect(listens, output, fmt, summary_interval, quiet):
    """Receive records from sensors (a reference collector): Fluent Forward
    and plain msgpack streams in, a msgpack or JSON Lines file out, a
    per-endpoint summary on stderr. Stops on Ctrl-C or SIGTERM.

    \b
    Examples:
      sensor collect --listen fluent://127.0.0.1:24224 --format jsonl
      sensor collect --listen tcp://0.0.0.0:5170 --listen unix:///run/sensor.sock -o records.msgpack
    """
    from .collect import CollectError, collect as run_collect

    interval = summary_interval or (5.0 if sys.stderr.isatty() else None)
    try:
        run_collect(listens, output, fmt, interval, quiet)
    except CollectError as e:
        raise click.BadParameter(str(e), param_hint="'--listen'")
    except OSError as e:
        raise click.ClickException("cannot write %s: %s" % (output, e.strerror))
