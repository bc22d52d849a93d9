/** `bertq status` as text: the fleet summary, one line per worker, and per-stage latency. */
import type { FleetStatus } from '@bertq/client';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const ms = (v: number | undefined) => (v === undefined ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(1));
const num = (v: number | null | undefined) => (v === null || v === undefined ? '–' : String(v));

export function renderStatus(s: FleetStatus): string {
  const first = s.workers[0];
  const cfg = first?.config;
  const out: string[] = [];
  out.push(
    `service ${s.service}: ${s.num_workers} worker(s) (${s.states.ready} ready, ${s.states.starting} starting, ${s.states.draining} draining)`,
  );
  if (cfg) {
    out.push(
      `model ${cfg.model_dir ?? '?'} · ${cfg.pooling_strategy} layer ${cfg.pooling_layer.join(',')} · max_seq_len ${cfg.max_seq_len ?? 'NONE'} · output ${(cfg.output_shape ?? []).map((d) => d ?? 'T').join('×')}${cfg.precision && cfg.precision !== 'float32' ? ` · ${cfg.precision}` : cfg.fp16 ? ' · fp16' : ''}`,
    );
    // Workers on other hosts may run other int8 kernels: each path once.
    const int8Paths = [...new Set(s.workers.flatMap((w) => (w.config.int8_kernel ? [w.config.int8_kernel.path] : [])))];
    if (int8Paths.length > 0) out.push(`int8 kernel: ${int8Paths.join('; ')}`);
  }
  out.push(
    `queue: high ${num(s.queue.high.pending)} waiting / ${num(s.queue.high.ack_pending)} in flight · bulk ${num(s.queue.bulk.pending)} waiting / ${num(s.queue.bulk.ack_pending)} in flight · ${s.queue.local_rows} rows held by workers`,
  );
  out.push(
    `totals: ${s.statistic.num_data_request} requests, ${s.statistic.num_total_seq} sentences, ${s.statistic.num_exception} errors, ${s.statistic.num_timeout} timeouts · ${s.statistic.request_per_second.toFixed(1)} req/s, ${s.statistic.seq_per_second.toFixed(1)} sentences/s`,
  );
  out.push('');
  out.push(
    table(
      ['worker', 'host', 'pid', 'state', 'device', 'requests', 'sentences', 'sent/s', 'rows held', 'uptime s'],
      s.workers.map((w) => [
        w.worker_id,
        w.host ?? '–',
        w.pid === undefined ? '–' : String(w.pid),
        w.state,
        w.config.device,
        String(w.statistic.num_data_request),
        String(w.statistic.num_total_seq),
        (w.statistic.seq_per_second ?? 0).toFixed(1),
        String(w.queue.local_rows),
        w.uptime_s === undefined ? '–' : w.uptime_s.toFixed(0),
      ]),
    ),
  );
  if (s.workers.length > 0) {
    out.push('');
    const stages = ['tokenization', 'queue', 'inference', 'total'] as const;
    out.push(
      table(
        ['latency ms (p50 / p99)', ...stages],
        s.workers.map((w) => [
          w.worker_id,
          ...stages.map((k) =>
            w.timings[k].count === 0 ? '–' : `${ms(w.timings[k].p50_ms)} / ${ms(w.timings[k].p99_ms)}`,
          ),
        ]),
      ),
    );
  }
  for (const u of s.unreachable) out.push(`unreachable: ${u.worker_id}: ${u.error}`);
  return out.join('\n');
}
