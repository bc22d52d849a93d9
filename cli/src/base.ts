/**
 * What every bertq command shares: how to reach NATS (servers, auth, TLS), which service, how much to
 * log. Each flag has a BERTQ_* environment fallback so a deployment configures bertq by env alone.
 */
import { Command, Flags } from '@oclif/core';
import type { Interfaces } from '@oclif/core';
import type { ClientOptions } from '@bertq/client';
import type { NatsConnectOptions } from '@bertq/nats';
import { BadRequestError } from '@bertq/protocol';
import { readSecretFile, warnIfOnCommandLine } from './secrets.js';

export type InferredFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof BaseCommand)['baseFlags'] & T['flags']
>;
export type InferredArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>;

const CONNECTION = 'CONNECTION';

/** The environment variables that are not a flag's fallback, for the help of the commands that read them. */
export const ENVIRONMENT_HELP = [
  'Environment:',
  '- BERTQ_CACHE: where downloaded models, built ONNX graphs and the embedded nats-server store live (default $XDG_CACHE_HOME/bertq, else ~/.cache/bertq).',
  '- HF_ENDPOINT: the Hugging Face hub or mirror --model ids come from (default https://huggingface.co).',
  '- HF_TOKEN: token for private or gated hub models.',
  '- BERTQ_*: every flag reads the variable its help names.',
].join('\n');

export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    // -h as well as --help, on every command (bert-as-service's argparse took -h).
    help: Flags.help({ char: 'h' }),
    server: Flags.string({
      summary: 'NATS server URL(s), comma-separated for a cluster.',
      description: 'With `bertq start`, a local URL where nothing answers gets an embedded nats-server -js.',
      env: 'BERTQ_NATS_URL',
      default: 'nats://127.0.0.1:4222',
      helpGroup: CONNECTION,
    }),
    service: Flags.string({
      summary: 'Service name: workers and clients of one model share it; several services share one NATS.',
      env: 'BERTQ_SERVICE',
      default: 'default',
      helpGroup: CONNECTION,
    }),
    user: Flags.string({
      summary: 'NATS user name (with --password-file, or BERTQ_NATS_PASSWORD).',
      env: 'BERTQ_NATS_USER',
      helpGroup: CONNECTION,
    }),
    password: Flags.string({
      summary:
        'NATS password. On the command line every user sees it in `ps`: prefer --password-file or BERTQ_NATS_PASSWORD.',
      env: 'BERTQ_NATS_PASSWORD',
      helpGroup: CONNECTION,
      exclusive: ['password-file'],
    }),
    'password-file': Flags.string({
      summary: 'File holding the NATS password (a mounted secret); one trailing newline is ignored.',
      env: 'BERTQ_NATS_PASSWORD_FILE',
      helpGroup: CONNECTION,
    }),
    token: Flags.string({
      summary: 'NATS auth token (prefer --token-file or BERTQ_NATS_TOKEN: argv shows in `ps`).',
      env: 'BERTQ_NATS_TOKEN',
      helpGroup: CONNECTION,
      exclusive: ['token-file'],
    }),
    'token-file': Flags.string({
      summary: 'File holding the NATS auth token.',
      env: 'BERTQ_NATS_TOKEN_FILE',
      helpGroup: CONNECTION,
    }),
    creds: Flags.string({
      summary: 'NATS credentials file (JWT + NKey seed, from nsc).',
      env: 'BERTQ_NATS_CREDS',
      helpGroup: CONNECTION,
      exclusive: ['nkey'],
    }),
    nkey: Flags.string({
      summary: 'File holding a NATS NKey seed (SU…), for servers that authenticate by NKey.',
      env: 'BERTQ_NATS_NKEY',
      helpGroup: CONNECTION,
    }),
    'tls-ca': Flags.string({
      summary: 'CA certificate to verify the NATS server (enables TLS).',
      env: 'BERTQ_TLS_CA',
      helpGroup: CONNECTION,
    }),
    'tls-cert': Flags.string({
      summary: 'Client certificate for mutual TLS.',
      env: 'BERTQ_TLS_CERT',
      helpGroup: CONNECTION,
      dependsOn: ['tls-key'],
    }),
    'tls-key': Flags.string({
      summary: 'Client key for mutual TLS.',
      env: 'BERTQ_TLS_KEY',
      helpGroup: CONNECTION,
      dependsOn: ['tls-cert'],
    }),
    tenant: Flags.string({
      summary:
        'Tenant this NATS user belongs to (`bertq auth init --tenant`): replies and results use its own subjects.',
      description:
        'Results come on bertq.v1.<service>.results.<tenant>.<id> and request replies on _INBOX.<tenant>.…, the only subjects a tenant user may read (docs/security.md, "Tenants").',
      env: 'BERTQ_TENANT',
      helpGroup: CONNECTION,
    }),
    'log-format': Flags.option({
      summary: 'Log lines as JSON, or readable (pretty). Default: readable on a terminal, JSON otherwise.',
      options: ['json', 'pretty'] as const,
      env: 'BERTQ_LOG_FORMAT',
    })(),
    'log-level': Flags.option({
      summary: 'Log verbosity.',
      options: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      default: 'info',
      env: 'BERTQ_LOG_LEVEL',
    })(),
  };

  protected flags!: InferredFlags<T>;
  protected args!: InferredArgs<T>;

  public override async init(): Promise<void> {
    await super.init();
    const { args, argv, flags } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    });
    this.flags = flags as InferredFlags<T>;
    // Warnings from the libraries, in the CLI's words and without Node's "(node:PID) Name:" prefix.
    process.removeAllListeners('warning');
    process.on('warning', (warning) => process.stderr.write(`warning: ${inCliWords(warning.message)}\n`));
    // Every logger of this process, and of the workers it forks (they inherit the environment).
    const format = (flags as { 'log-format'?: string })['log-format'];
    if (format !== undefined) process.env.BERTQ_LOG_FORMAT = format;
    this.args = args as InferredArgs<T>;
    this.positional = argv.map(String);
  }

  /** Positional arguments after flag parsing (for commands that take any number of them). */
  protected positional: string[] = [];

  protected servers(): string[] {
    return this.flags.server
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }

  /** How to reach NATS, in the one spelling every bertq package uses (fleet, gateway, client). */
  protected natsOptions(name: string): NatsConnectOptions {
    const f = this.flags;
    const o: NatsConnectOptions = { servers: this.servers(), name };
    const password = f.password ?? readSecretFile(f['password-file'], '--password-file');
    const token = f.token ?? readSecretFile(f['token-file'], '--token-file');
    warnIfOnCommandLine('password', 'BERTQ_NATS_PASSWORD or --password-file');
    warnIfOnCommandLine('token', 'BERTQ_NATS_TOKEN or --token-file');
    if ((f.user === undefined) !== (password === undefined))
      throw new BadRequestError(
        f.user === undefined
          ? 'a NATS password needs its user: give --user (or BERTQ_NATS_USER)'
          : `user ${f.user} needs a password: give --password-file (or BERTQ_NATS_PASSWORD)`,
      );
    if (f.user) o.user = f.user;
    if (password) o.pass = password;
    if (token) o.token = token;
    if (f.creds) o.credsFile = f.creds;
    if (f.nkey) o.nkeySeedFile = f.nkey;
    if (f.tenant) o.tenant = f.tenant;
    if (f['tls-ca'] || f['tls-cert']) o.tls = { caFile: f['tls-ca'], certFile: f['tls-cert'], keyFile: f['tls-key'] };
    return o;
  }

  /** natsOptions without the server list: auth and TLS, for code that is handed the servers apart. */
  protected connectionOptions(name: string): Omit<NatsConnectOptions, 'servers'> {
    const { servers: _servers, ...rest } = this.natsOptions(name);
    return rest;
  }

  /** Connection settings in the client library's form: the same options, plus the service. */
  protected clientOptions(): ClientOptions<'ndarray'> {
    return { ...this.natsOptions(`bertq ${this.id ?? 'cli'}`), service: this.flags.service };
  }

  /** Typed bertq errors become a clean one-line message and their code as the exit status reason. */
  protected override async catch(err: Error & { code?: string; exitCode?: number; oclif?: unknown }): Promise<unknown> {
    // An unknown flag gets the nearest real one, not the whole help.
    const unknownFlags = (err as { flags?: unknown }).flags;
    if (Array.isArray(unknownFlags) && /^Nonexistent flag/.test(err.message)) {
      const known = Object.keys({ ...(this.ctor.flags ?? {}), ...(this.ctor.baseFlags ?? {}) });
      const hints = unknownFlags.map((f: string) => {
        const near = closest(String(f).replace(/^-+/, '').split('=')[0]!, known);
        return near === undefined ? `unknown flag ${f}` : `unknown flag ${f}: did you mean --${near}?`;
      });
      this.error(`${hints.join('; ')} (see --help)`, { exit: 2 });
    }
    // A file the command could not read or write (Node's ENOENT, EACCES…): the user's input.
    const fileProblem = typeof (err as { syscall?: unknown }).syscall === 'string';
    if (err.oclif === undefined && typeof err.code === 'string' && (fileProblem || /^[A-Z_]+$/.test(err.code))) {
      const code = fileProblem ? 'BAD_REQUEST' : err.code;
      // --json: the error is JSON too, on stdout, so a script reads one format whatever happens.
      if (this.jsonEnabled()) {
        this.logJson({ error: { code, message: err.message } });
        this.exit(1);
      }
      // One line, not wrapped to the terminal's width: a path in it stays whole, and grep finds it.
      process.stderr.write(`${code}: ${err.message}\n`);
      this.exit(1);
    }
    return super.catch(err);
  }
}

/** The library's option names in a message, as the CLI's flags. */
const CLI_WORDS: Array<[RegExp, string]> = [
  [
    /pass checkLength: true to refuse such rows \(TOO_LONG\), or checkLength: false to silence this/,
    'give --check-length raise to refuse such rows (TOO_LONG), or --check-length off to silence this',
  ],
  [/pass checkVersion: false/g, 'the CLI does not check versions'],
];

export function inCliWords(message: string): string {
  return CLI_WORDS.reduce((text, [library, cli]) => text.replace(library, cli), message);
}

/** The known name nearest to `name` (edit distance, `_` read as `-`), when it is plausibly a typo. */
export function closest(name: string, known: readonly string[]): string | undefined {
  const wanted = name.toLowerCase().replaceAll('_', '-');
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const d = editDistance(wanted, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(wanted.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}
