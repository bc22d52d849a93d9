/**
 * What every bertq command shares: how to reach NATS (servers, auth, TLS), which service, how much to
 * log. Each flag has a BERTQ_* environment fallback so a deployment configures bertq by env alone.
 */
import { Command, Flags } from '@oclif/core';
import type { Interfaces } from '@oclif/core';
import type { ClientOptions } from '@bertq/client';
import type { NatsConnectOptions } from '@bertq/worker';

export type InferredFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>;
export type InferredArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>;

const CONNECTION = 'CONNECTION';

export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
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
    user: Flags.string({ summary: 'NATS user name.', env: 'BERTQ_NATS_USER', helpGroup: CONNECTION, dependsOn: ['password'] }),
    password: Flags.string({ summary: 'NATS password.', env: 'BERTQ_NATS_PASSWORD', helpGroup: CONNECTION, dependsOn: ['user'] }),
    token: Flags.string({ summary: 'NATS auth token.', env: 'BERTQ_NATS_TOKEN', helpGroup: CONNECTION }),
    creds: Flags.string({ summary: 'NATS credentials file (JWT + NKey seed, from nsc).', env: 'BERTQ_NATS_CREDS', helpGroup: CONNECTION }),
    'tls-ca': Flags.string({ summary: 'CA certificate to verify the NATS server (enables TLS).', env: 'BERTQ_TLS_CA', helpGroup: CONNECTION }),
    'tls-cert': Flags.string({ summary: 'Client certificate for mutual TLS.', env: 'BERTQ_TLS_CERT', helpGroup: CONNECTION, dependsOn: ['tls-key'] }),
    'tls-key': Flags.string({ summary: 'Client key for mutual TLS.', env: 'BERTQ_TLS_KEY', helpGroup: CONNECTION, dependsOn: ['tls-cert'] }),
    'log-level': Flags.option({
      summary: 'Log verbosity (JSON lines).',
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
    this.args = args as InferredArgs<T>;
    this.positional = argv.map(String);
  }

  /** Positional arguments after flag parsing (for commands that take any number of them). */
  protected positional: string[] = [];

  protected servers(): string[] {
    return this.flags.server.split(',').map((s) => s.trim()).filter(Boolean);
  }

  private tlsFiles(): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
    const ca = this.flags['tls-ca'];
    const cert = this.flags['tls-cert'];
    const key = this.flags['tls-key'];
    if (!ca && !cert) return undefined;
    return { ...(ca ? { caFile: ca } : {}), ...(cert ? { certFile: cert } : {}), ...(key ? { keyFile: key } : {}) };
  }

  /** Connection settings in the worker package's form (fleet, gateway). */
  protected natsOptions(name: string): NatsConnectOptions {
    const o: NatsConnectOptions = { servers: this.servers(), name };
    if (this.flags.user) o.user = this.flags.user;
    if (this.flags.password) o.pass = this.flags.password;
    if (this.flags.token) o.token = this.flags.token;
    if (this.flags.creds) o.credsFile = this.flags.creds;
    const tls = this.tlsFiles();
    if (tls) o.tls = tls;
    return o;
  }

  /** Connection settings in the client library's form. */
  protected clientOptions(): ClientOptions<'ndarray'> {
    const o: ClientOptions<'ndarray'> = { servers: this.servers(), service: this.flags.service, name: `bertq ${this.id ?? 'cli'}` };
    if (this.flags.user) o.user = this.flags.user;
    if (this.flags.password) o.pass = this.flags.password;
    if (this.flags.token) o.token = this.flags.token;
    if (this.flags.creds) o.creds = this.flags.creds;
    const tls = this.tlsFiles();
    if (tls) o.tls = tls;
    return o;
  }

  /** Typed bertq errors become a clean one-line message and their code as the exit status reason. */
  protected override async catch(err: Error & { code?: string; exitCode?: number; oclif?: unknown }): Promise<unknown> {
    if (err.oclif === undefined && typeof err.code === 'string' && /^[A-Z_]+$/.test(err.code)) {
      this.error(`${err.code}: ${err.message}`, { exit: 1, code: err.code });
    }
    return super.catch(err);
  }
}
