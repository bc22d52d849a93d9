/**
 * bert-as-service's command lines, as its users type them, turned into bertq's:
 *   bert-serving-start -model_dir /m -num_worker 2 -pooling_layer -1 -2 -port 5555
 *   → bertq start --model-dir /m --num-worker 2 --pooling-layer=-1,-2 --client-port 5555 --own-nats
 * and the space-separated list form (`--pooling-layer -1 -2`) that `bertq start` also takes.
 *
 * `-port` keeps its meaning for clients: it is where bert-as-service's Python client connects
 * (clients/python speaks HTTP to the gateway `bertq start --client-port` serves there; default 5555,
 * as before). And as bert-as-service's server did, bert-serving-start starts its own broker (a
 * nats-server on a free port) rather than joining one it happens to find, unless --server (or
 * BERTQ_NATS_URL) names one. bert-serving-terminate -port P finds that fleet by its port.
 * Pure functions: the bins (`bin/bert-serving-*.js`, `bin/run.js`) call them before oclif parses.
 */

/** Flags whose value is a list: `-pooling_layer -1 -2` (argparse nargs='+') becomes `=-1,-2`. */
const LIST_FLAGS = new Set([
  'pooling-layer',
  'device-map',
  // bert-serving-benchmark's experiment values
  'test-max-seq-len',
  'test-client-batch-size',
  'test-num-client',
  'test-max-batch-size',
  'test-pooling-layer',
  'test-precision',
]);

/** bert-as-service flags bertq has no use for, and what it does instead. */
const IGNORED: Record<string, string> = {
  'gpu-memory-fraction':
    'ONNX Runtime allocates GPU memory as it needs it; bound work per batch with --max-batch-tokens',
  xla: 'XLA is TensorFlow’s compiler; ONNX Runtime optimises the graph itself (--fused picks its fused kernels)',
  port: 'bertq has no ZeroMQ ports: workers and clients meet on one NATS server (--server, default nats://127.0.0.1:4222)',
  'port-out': 'bertq has no second port: results come back on the request’s own HTTP connection (or over NATS)',
  'wait-till-ready': 'bertq benchmark waits for each fleet it starts to report ready, with a deadline of its own',
};

/** bert-as-service names bertq spells otherwise. */
const RENAMED: Record<string, string> = {
  'http-max-connect': 'http-max-connections',
};

/** Which bert-serving-* command the arguments are for. */
export type ServingCommand = 'start' | 'terminate' | 'benchmark';

/** bert-as-service's default `-port`: where its clients connect. */
export const BERT_SERVING_PORT = 5555;

export interface Translation {
  /** Arguments for bertq. */
  args: string[];
  /** One line each for flags that were dropped or renamed, for stderr. */
  notes: string[];
}

const NUMBER = /^-?\d+$/;
/** `-1`, or already joined: `-1,-2`. */
const NUMBER_LIST = /^-?\d+(,-?\d+)*$/;

/**
 * bert-as-service's single-dash snake_case flags → bertq's kebab-case, lists joined, flags with no
 * meaning here dropped with a note. Anything else passes through (an unknown flag then gets bertq's
 * "did you mean" answer).
 */
export function translateBertServingArgs(
  argv: readonly string[],
  command: ServingCommand = 'start',
  env: NodeJS.ProcessEnv = {},
): Translation {
  const args: string[] = [];
  const notes: string[] = [];
  // start and terminate: -port is the clients' port (see the top of this file).
  const portIsClientPort = command !== 'benchmark';
  let clientPort = false;
  let server = env.BERTQ_NATS_URL !== undefined && env.BERTQ_NATS_URL !== '';
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const m = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/.exec(token);
    if (m === null) {
      args.push(token);
      continue;
    }
    let name = m[1]!.toLowerCase().replaceAll('_', '-');
    if (name === 'h') name = 'help'; // argparse's -h
    const inline = m[2];
    // The values that follow a flag (numbers included: -pooling_layer -1 -2).
    const values: string[] = inline === undefined ? [] : [inline];
    while (
      inline === undefined &&
      i + 1 < argv.length &&
      (NUMBER.test(argv[i + 1]!) || !argv[i + 1]!.startsWith('-'))
    ) {
      values.push(argv[++i]!);
      if (!LIST_FLAGS.has(name)) break;
    }
    if (name === 'server') server = true;
    if (portIsClientPort && name === 'port') {
      name = 'client-port';
      clientPort = true;
    } else if (Object.hasOwn(IGNORED, name)) {
      notes.push(`-${m[1]} is ignored: ${IGNORED[name]}`);
      continue;
    }
    if (Object.hasOwn(RENAMED, name)) {
      notes.push(`-${m[1]} is --${RENAMED[name]} in bertq`);
      name = RENAMED[name]!;
    }
    if (values.length === 0) args.push(`--${name}`);
    else if (LIST_FLAGS.has(name)) args.push(`--${name}=${values.join(',')}`);
    else args.push(`--${name}`, ...values);
  }
  if (portIsClientPort && !server && !args.includes('--help')) {
    if (!clientPort) args.push('--client-port', String(BERT_SERVING_PORT));
    if (command === 'start') args.push('--own-nats');
  }
  return { args, notes };
}

/** `bertq start --pooling-layer -1 -2` (space-separated lists) → `--pooling-layer=-1,-2`. */
export function joinListFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const name = /^--([\w-]+)$/.exec(token)?.[1];
    if (name === undefined || !LIST_FLAGS.has(name)) {
      out.push(token);
      continue;
    }
    const values: string[] = [];
    while (i + 1 < argv.length && NUMBER_LIST.test(argv[i + 1]!)) values.push(argv[++i]!);
    out.push(values.length === 0 ? token : `--${name}=${values.join(',')}`);
  }
  return out;
}
