import { existsSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { Command, Flags } from '@oclif/core';
import { ROLES, checkTenants, renderAuthConf, type Role } from '../../auth/roles.js';
import { writeFileWhole } from '../../files.js';

/**
 * `bertq auth init`: an NKey setup of bertq's three roles, ready to run. NKeys rather than
 * passwords: the server holds only public keys, each process holds only its own seed, and nothing
 * secret goes over the wire. (JWT setups with operators and accounts are what NATS's own `nsc`
 * makes; bertq takes their `.creds` files with --creds.)
 */
export default class AuthInit extends Command {
  static override summary = "Write a nats-server configuration with bertq's roles and an NKey per role.";
  static override description =
    `Writes, into --output: nats-server.conf (JetStream, monitoring on loopback, the roles), bertq-auth.conf (the client, worker and admin permissions, with each user's NKey public key), and client.nk, worker.nk, admin.nk: each role's NKey seed, readable by its owner only. With --tenant (repeatable), each tenant gets a client user of its own, tenant-<name>.nk, that reads only its own results and replies, and there is no shared client.nk. Existing files are never overwritten unless --force. Then run nats-server -c <output>/nats-server.conf, and give each bertq process its own seed with --nkey (and a tenant's its --tenant).`;
  static override examples = [
    '<%= config.bin %> auth init --output /etc/bertq-nats',
    '<%= config.bin %> auth init --output ./nats --listen 0.0.0.0:4222',
    '<%= config.bin %> auth init --output ./nats --tenant acme --tenant globex',
  ];
  static override flags = {
    help: Flags.help({ char: 'h' }),
    output: Flags.string({ summary: 'Folder to write into (created, mode 700).', default: 'bertq-nats' }),
    listen: Flags.string({
      summary: 'Where the nats-server listens for clients (host:port).',
      default: '127.0.0.1:4222',
    }),
    force: Flags.boolean({ summary: 'Replace files that exist (their keys stop working).' }),
    tenant: Flags.string({
      summary: 'A tenant: a client user of its own that reads only its own results (repeatable).',
      multiple: true,
    }),
  };

  public async run(): Promise<{
    output: string;
    files: string[];
    publicKeys: Partial<Record<Role, string>>;
    tenantKeys: Record<string, string>;
  }> {
    const { flags } = await this.parse(AuthInit);
    if (!/^[\w.:[\]-]+:\d{1,5}$/.test(flags.listen))
      this.error(`--listen takes host:port (127.0.0.1:4222), got ${flags.listen}`, { exit: 2 });
    let tenants: string[];
    try {
      tenants = checkTenants(flags.tenant ?? []);
    } catch (err) {
      this.error(`--tenant: ${(err as Error).message}`, { exit: 2 });
    }
    // With tenants every client is a tenant's: no shared client seed is written.
    const roles = tenants.length > 0 ? ROLES.filter((r) => r !== 'client') : [...ROLES];
    const dir = resolve(flags.output);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // An existing folder keeps its mode on mkdir: seeds must not sit where others may list or reach them.
    const mode = (await stat(dir)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      await chmod(dir, 0o700);
      this.logToStderr(`${dir} was mode ${mode.toString(8)}; made it 700 (it holds secret seeds)`);
    }

    const pairs = new Map([...roles, ...tenants.map(tenantFile)].map((name) => [name, createUser()]));
    const key = (name: string) => pairs.get(name)?.getPublicKey() ?? '';
    const publicKeys = Object.fromEntries(ROLES.map((r) => [r, key(r)])) as Record<Role, string>;
    const tenantKeys = Object.fromEntries(tenants.map((t) => [t, key(tenantFile(t))]));
    const files: Array<[string, string, number]> = [
      [
        'nats-server.conf',
        [
          `# nats-server for bertq, written by \`bertq auth init\`: nats-server -c ${join(dir, 'nats-server.conf')}`,
          `listen: ${flags.listen}`,
          'http: 127.0.0.1:8222',
          'max_payload: 1MB',
          '',
          'jetstream {',
          `  store_dir: ${JSON.stringify(join(dir, 'jetstream'))}`,
          '}',
          '',
          'include "bertq-auth.conf"',
          '',
        ].join('\n'),
        0o644,
      ],
      ['bertq-auth.conf', renderAuthConf({ kind: 'nkey', publicKeys, tenantKeys }, tenants), 0o644],
      ...[...pairs].map(([name, pair]): [string, string, number] => [
        `${name}.nk`,
        `${new TextDecoder().decode(pair.getSeed())}\n`,
        0o600,
      ]),
    ];
    // All or nothing: refuse before writing anything when a file is there.
    if (!flags.force)
      for (const [name] of files) {
        if (existsSync(join(dir, name)))
          this.error(
            `${join(dir, name)} exists: its keys may be in use. Choose another --output, or --force to replace`,
            {
              exit: 2,
            },
          );
      }
    for (const [name, text, mode] of files) await writeFileWhole(join(dir, name), text, mode);

    this.log(`wrote ${files.map(([n]) => n).join(', ')} to ${dir}`);
    this.log('');
    this.log(`  nats-server -c ${join(dir, 'nats-server.conf')}`);
    this.log(`  bertq setup --server nats://${flags.listen} --nkey ${join(dir, 'admin.nk')}`);
    this.log(`  bertq start --server nats://${flags.listen} --nkey ${join(dir, 'worker.nk')} --model-dir …`);
    if (tenants.length === 0)
      this.log(`  bertq encode --server nats://${flags.listen} --nkey ${join(dir, 'client.nk')} "hello"`);
    for (const t of tenants)
      this.log(
        `  bertq encode --server nats://${flags.listen} --nkey ${join(dir, `${tenantFile(t)}.nk`)} --tenant ${t} "hello"`,
      );
    this.log(`  bertq terminate --server nats://${flags.listen} --nkey ${join(dir, 'admin.nk')}`);
    this.log('');
    this.log('Give each process only its own .nk file; the server needs only the two .conf files.');
    return {
      output: dir,
      files: files.map(([n]) => join(dir, n)),
      publicKeys: Object.fromEntries(roles.map((r) => [r, publicKeys[r]])),
      tenantKeys,
    };
  }
}

/** A tenant's seed file is `tenant-<name>.nk`, so no tenant name can collide with a role's file. */
function tenantFile(tenant: string): string {
  return `tenant-${tenant}`;
}
