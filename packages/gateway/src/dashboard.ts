/**
 * The live dashboard's server side: its three static files (read once from the package's assets/
 * folder, which ships beside dist/), the compact fleet summary the page draws, and the server-sent
 * events hub that pushes one update per second to every open page.
 */
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { FleetStatus } from '@bertq/client';
import { InternalError, type ServerConfig } from '@bertq/protocol';
import type { Reading } from './fleet-cache.js';
import type { HistoryPoint } from './history.js';

/** packages/gateway/assets, from dist/src/dashboard.js (build output) — the folder ships with the package. */
export const ASSETS_DIR = fileURLToPath(new URL('../../assets/', import.meta.url));

/** URL path → file in ASSETS_DIR and its Content-Type. */
export const DASHBOARD_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
};

export interface DashboardAsset {
  body: Buffer;
  type: string;
}

/** Reads every dashboard file; InternalError naming the file when the package was installed without them. */
export async function loadDashboardAssets(dir = ASSETS_DIR): Promise<Map<string, DashboardAsset>> {
  const assets = new Map<string, DashboardAsset>();
  for (const [path, { file, type }] of Object.entries(DASHBOARD_FILES)) {
    const full = `${dir}${file}`;
    try {
      assets.set(path, { body: await readFile(full), type });
    } catch (err) {
      throw new InternalError(
        `the dashboard file ${full} cannot be read (${(err as Error).message}); reinstall @bertq/gateway`,
        { cause: err },
      );
    }
  }
  return assets;
}

/** One worker as the dashboard shows it. */
export interface WorkerSummary {
  id: string;
  state: string;
  device: string;
  uptimeS: number | null;
  rowsPerSecond: number;
  requestsPerSecond: number;
  rowsTotal: number;
  localRows: number;
  localBound: number | null;
  inferenceP50Ms: number | null;
  totalP50Ms: number | null;
  avgBatchRows: number | null;
}

/** What the dashboard shows about the fleet: model, pooling, workers, queue, or why it cannot. */
export interface FleetSummary {
  ok: boolean;
  at: number | null;
  error?: { code: string; message: string };
  service: string;
  model?: {
    name: string;
    format: string | null;
    dims: number | null;
    layers: number | null;
    hiddenSize: number | null;
    pooling: string;
    poolingLayer: number[];
    maxSeqLen: number | null;
    maxBatchSize: number;
    normalize: boolean;
    fp16: boolean;
    showTokens: boolean;
  };
  workers: WorkerSummary[];
  queue?: { high: number | null; bulk: number | null; localRows: number };
  unreachable: number;
}

export function summarizeFleet(service: string, reading: Reading<FleetStatus> | undefined): FleetSummary {
  if (reading === undefined) return { ok: false, at: null, service, workers: [], unreachable: 0 };
  if (!reading.ok)
    return {
      ok: false,
      at: reading.at,
      service,
      error: { code: reading.error.code, message: reading.error.message },
      workers: [],
      unreachable: 0,
    };
  const s = reading.value;
  const first: ServerConfig | undefined = s.workers[0]?.config;
  const summary: FleetSummary = {
    ok: true,
    at: reading.at,
    service: s.service,
    workers: s.workers.map((w) => ({
      id: w.worker_id,
      state: w.state,
      device: w.config.device,
      uptimeS: w.uptime_s ?? null,
      rowsPerSecond: w.statistic.seq_per_second ?? 0,
      requestsPerSecond: w.statistic.request_per_second ?? 0,
      rowsTotal: w.statistic.num_total_seq,
      localRows: w.queue.local_rows,
      localBound: w.queue.local_bound ?? null,
      inferenceP50Ms: w.timings.inference.p50_ms ?? null,
      totalP50Ms: w.timings.total.p50_ms ?? null,
      avgBatchRows: w.batches?.avg_rows ?? null,
    })),
    queue: { high: s.queue.high.pending, bulk: s.queue.bulk.pending, localRows: s.queue.local_rows },
    unreachable: s.unreachable.length,
  };
  if (first !== undefined) {
    summary.model = {
      name: typeof first.model_dir === 'string' ? first.model_dir : s.service,
      format: first.model_format ?? null,
      dims: typeof first.output_shape?.at(-1) === 'number' ? (first.output_shape.at(-1) as number) : null,
      layers: first.model?.num_hidden_layers ?? null,
      hiddenSize: first.model?.hidden_size ?? null,
      pooling: first.pooling_strategy,
      poolingLayer: first.pooling_layer,
      maxSeqLen: first.max_seq_len,
      maxBatchSize: first.max_batch_size,
      normalize: first.normalize === true,
      fp16: first.fp16 === true,
      showTokens: first.show_tokens_to_client,
    };
  }
  return summary;
}

/** The full state a page starts from. */
export interface DashboardSnapshot {
  service: string;
  gateway: { version: string; startedAt: string; tokenRequired: boolean };
  fleet: FleetSummary;
  history: HistoryPoint[];
}

/** One second's update. */
export interface DashboardTick {
  point: HistoryPoint;
  fleet: FleetSummary;
}

/** Open /events streams; each gets every tick as an SSE `tick` event. */
export class EventHub {
  private readonly streams = new Set<ServerResponse>();

  get size(): number {
    return this.streams.size;
  }

  /** Starts an SSE stream on `res` with the snapshot as its first event; ends it when the client leaves. */
  open(res: ServerResponse, snapshot: DashboardSnapshot, onClose: () => void): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      // Proxies such as nginx buffer responses unless told not to; a buffered event stream is not live.
      'X-Accel-Buffering': 'no',
    });
    res.write(`retry: 2000\n\n`);
    res.write(sseEvent('snapshot', snapshot));
    this.streams.add(res);
    res.on('close', () => {
      this.streams.delete(res);
      onClose();
    });
  }

  broadcast(tick: DashboardTick): void {
    if (this.streams.size === 0) return;
    const text = sseEvent('tick', tick);
    for (const res of this.streams) res.write(text);
  }

  /** Ends every stream (gateway shutdown). */
  endAll(): void {
    for (const res of this.streams) res.end();
    this.streams.clear();
  }
}

function sseEvent(name: string, data: unknown): string {
  // JSON has no raw newlines, so the whole document fits one `data:` line.
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}
