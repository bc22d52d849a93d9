import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { Command, Flags } from '@oclif/core';
import { ROLES, renderAuthConf, type Role } from '../../auth/roles.js';
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
    `Writes, into --output: nats-server.conf (JetStream, monitoring on loopback, the roles), bertq-auth.conf (the client, worker and admin permissions, with each user's NKey public key), and client.nk, worker.nk, admin.nk: each role's NKey seed, readable by its owner only. Existing files are never overwritten unless --force. Then run nats-server -c <output>/nats-server.conf, and give each bertq process its own seed with --nkey.`;
  static override examples = [
    '<%= config.bin %> auth init --output /etc/bertq-nats',
    '<%= config.bin %> auth init --output ./nats --listen 0.0.0.0:4222',
  ];
  static override flags = {
    output: Flags.string({ summary: 'Folder to write into (created, mode 700).', default: 'bertq-nats' }),
    listen: Flags.string({
      summary: 'Where the nats-server listens for clients (host:port).',
      default: '127.0.0.1:4222',
    }),
    force: Flags.boolean({ summary: 'Replace files that exist (their keys stop working).' }),
  };

  public async run(): Promise<{ output: string; files: string[]; publicKeys: Record<Role, string> }> {
    const { flags } = await this.parse(AuthInit);
    if (!/^[\w.:[\]-]+:\d{1,5}$/.test(flags.listen))
      this.error(`--listen takes host:port (127.0.0.1:4222), got ${flags.listen}`, { exit: 2 });
    const dir = resolve(flags.output);
    await mkdir(dir, { recursive: true, mode: 0o700 });

    const pairs = Object.fromEntries(ROLES.map((role) => [role, createUser()])) as Record<
      Role,
      ReturnType<typeof createUser>
    >;
    const publicKeys = Object.fromEntries(ROLES.map((r) => [r, pairs[r].getPublicKey()])) as Record<Role, string>;
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
      ['bertq-auth.conf', renderAuthConf({ kind: 'nkey', publicKeys }), 0o644],
      ...ROLES.map((role): [string, string, number] => [
        `${role}.nk`,
        `${new TextDecoder().decode(pairs[role].getSeed())}\n`,
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
    this.log(`  bertq start --server nats://${flags.listen} --nkey ${join(dir, 'worker.nk')} --model-dir …`);
    this.log(`  bertq encode --server nats://${flags.listen} --nkey ${join(dir, 'client.nk')} "hello"`);
    this.log(`  bertq terminate --server nats://${flags.listen} --nkey ${join(dir, 'admin.nk')}`);
    this.log('');
    this.log('Give each process only its own .nk file; the server needs only the two .conf files.');
    return { output: dir, files: files.map(([n]) => join(dir, n)), publicKeys };
  }
}
